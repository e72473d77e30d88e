"""Evaluation on SeqIO tasks (paper Table 3): MMLU, CMMLU, C-Eval, GSM8K, MATH and HumanEval."""
