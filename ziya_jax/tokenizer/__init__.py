"""Ziya2's tokenizer: LLaMA2 SentencePiece extended with Chinese characters and `<human>`/`<bot>`."""
