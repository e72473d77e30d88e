"""Prompt templates of the paper's Appendix A (stage 2 supervised data, stage 3 MetaMath).

    zh:              问题:{question}\n回答:{answer}
    en:              Question:{question}\nAnswer:{answer}
    multiple choice: the question, then one line per choice "A.…", and the answer as
                     "回答:答案：B.…" (zh) or "Answer: B.…" (en)
    MetaMath:        Question:{query}\nAnswer:{response}
The paper prints each template on one line; a newline separates the parts here.
"""
from __future__ import annotations

LETTERS = "ABCDEFGHIJ"


class TemplateError(ValueError):
    pass


def _answer_index(answer, choices: list[str], where: str) -> int:
    if isinstance(answer, int) and 0 <= answer < len(choices):
        return answer
    text = str(answer).strip()
    if len(text) == 1 and text.upper() in LETTERS[:len(choices)]:
        return LETTERS.index(text.upper())
    if text in choices:
        return choices.index(text)
    raise TemplateError(f"{where}: answer {answer!r} is neither a letter, an index nor one of the {len(choices)} choices")


def render_supervised(record: dict, where: str = "record") -> str:
    """One supervised example as training text: needs `question`, `answer`; optional `choices`, `lang`."""
    for key in ("question", "answer"):
        if key not in record or record[key] in (None, ""):
            raise TemplateError(f"{where}: missing {key!r}; supervised records need question and answer")
    lang = record.get("lang") or "zh"
    if lang not in ("zh", "en"):
        raise TemplateError(f"{where}: lang {lang!r} is not zh or en")
    q, choices = str(record["question"]).strip(), list(record.get("choices") or [])
    lines = [("问题:" if lang == "zh" else "Question:") + q]
    if choices:
        lines += [f"{LETTERS[i]}.{c}" for i, c in enumerate(choices)]
        k = _answer_index(record["answer"], choices, where)
        lines.append(f"回答:答案：{LETTERS[k]}.{choices[k]}" if lang == "zh" else f"Answer: {LETTERS[k]}.{choices[k]}")
    else:
        lines.append(("回答:" if lang == "zh" else "Answer:") + str(record["answer"]).strip())
    return "\n".join(lines)


def render_metamath(record: dict, where: str = "record") -> str:
    """MetaMathQA records (`query`, `response`) or `question`/`answer`."""
    q = record.get("query", record.get("question"))
    a = record.get("response", record.get("answer"))
    if not q or not a:
        raise TemplateError(f"{where}: MetaMath records need query and response (or question and answer)")
    return f"Question:{str(q).strip()}\nAnswer:{str(a).strip()}"
