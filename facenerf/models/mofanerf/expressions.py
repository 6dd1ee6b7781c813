"""The learned expressions of MoFaNeRF by name: FaceScape's 20 expressions in their file order (0 = neutral)."""

from __future__ import annotations

from facenerf.errors import FaceNerfError


def expression_index(text: str | int, n_expressions: int) -> int:
    """A learned expression by name (e.g. ``smile``) or index; FaceNerfError if the model has none such."""
    from facenerf.data.synthetic import EXPRESSIONS

    value = str(text).strip()
    if value.lstrip("-").isdigit():
        index = int(value)
    elif value in EXPRESSIONS:
        index = EXPRESSIONS.index(value)
    else:
        raise FaceNerfError(f"unknown expression {value!r}: use an index 0..{n_expressions - 1} or one of "
                            f"{', '.join(EXPRESSIONS[:n_expressions])}")
    if not 0 <= index < n_expressions:
        raise FaceNerfError(f"expression {value!r} (index {index}) is not among the model's {n_expressions} "
                            "learned expressions")
    return index


def expression_name(index: int) -> str:
    """The FaceScape name of learned expression ``index`` (``expression<k>`` beyond the 20)."""
    from facenerf.data.synthetic import EXPRESSIONS

    return EXPRESSIONS[index] if index < len(EXPRESSIONS) else f"expression{index}"
