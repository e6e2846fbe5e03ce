"""Prompt templates per role: one rule for `{}` in training, evaluation and export.

A template is a text with exactly one `{}`, where the sentence goes (`'query: {}'`, PromptEOL's
`'This sentence : "{}" means in one word:"'`). Exactly one, everywhere: a second `{}` would repeat the sentence in
one place and be refused in another, so it is refused when the recipe loads (or the flag is read). Other braces
are plain text: only the two characters `{}` are the placeholder.

Retrieval is asymmetric: queries (anchors in training) and documents (positives and hard negatives) may take
different templates. Symmetric tasks such as STS embed both sides as queries, as MTEB's convention does.
"""

from __future__ import annotations

from dataclasses import dataclass

from cft.errors import CFTError

PLACEHOLDER = "{}"
ROLES = ("query", "document")


def check_template(template: str | None, where: str) -> str | None:
    """The template, or None for none (None or ""); CFTError naming `where` unless it holds exactly one `{}`."""
    if not template:
        return None
    if template.count(PLACEHOLDER) != 1:
        raise CFTError(f"{where} must contain '{{}}' exactly once, where the text goes (got {template!r}); "
                       "e.g. 'query: {}' or 'This sentence : \"{}\" means in one word:\"'")
    return template


def apply_template(template: str | None, text: str) -> str:
    """`text` in the place of the template's one `{}` (braces inside `text` are left alone)."""
    if not template:
        return text
    head, _, tail = template.partition(PLACEHOLDER)
    return f"{head}{text}{tail}"


def template_prefix(template: str | None, where: str) -> str:
    """What a template puts before the sentence ("" for none); CFTError when it also puts text after it, since a
    sentence-transformers prompt can only be a prefix."""
    if not template:
        return ""
    head, _, tail = template.partition(PLACEHOLDER)
    if tail:
        raise CFTError(f"{where} {template!r} puts text after the sentence ({tail!r}); sentence-transformers prompts "
                       "can only prefix it. Export with --format hf, or train with a prefix-only template")
    return head


@dataclass(frozen=True)
class PromptTemplates:
    """The template of each role: `query` for anchors, queries and both sides of symmetric tasks; `document` for
    positives, hard negatives and retrieval documents. None means the text as it is."""

    query: str | None = None
    document: str | None = None

    def __post_init__(self) -> None:
        for role in ROLES:
            object.__setattr__(self, role, check_template(getattr(self, role), f"{role} template"))

    @classmethod
    def symmetric(cls, template: str | None) -> PromptTemplates:
        """The same template for both roles (a recipe's `model.prompt_template`, `cft eval --prompt`)."""
        return cls(template, template)

    @property
    def is_symmetric(self) -> bool:
        return self.query == self.document

    def for_role(self, role: str) -> str | None:
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES} (got {role!r})")
        return self.query if role == "query" else self.document

    def apply(self, role: str, texts: list[str]) -> list[str]:
        template = self.for_role(role)
        return [apply_template(template, text) for text in texts]
