"""Ingestion settings: how text becomes tokens (:class:`TextOptions`, recorded with every
corpus so inference tokenizes new text identically) and how much input is accepted
(:class:`IngestLimits`)."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_MIB = 1 << 20


class TextOptions(BaseModel):
    """Text processing options; every field has a default and the model JSON round-trips.

    Pipeline, in order: Unicode normalization -> lowercasing -> word tokenization (runs of
    Unicode letters, digits and combining marks; ``_`` separates words) -> dropping tokens
    shorter than ``min_token_length`` characters, purely numeric tokens (``drop_numbers``)
    and stop words -> optional bigrams of adjacent kept tokens, joined with ``_`` ->
    corpus-level pruning by document frequency and vocabulary cap.

    ``min_df`` / ``max_df``: an int is a document count, a float in (0, 1] a fraction of the
    documents that have at least one token. ``max_vocab`` keeps the terms with the highest
    corpus frequency (ties broken alphabetically).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    normalization: Literal["NFC", "NFKC"] | None = "NFKC"
    lowercase: bool = True
    min_token_length: int = Field(default=2, ge=1, le=1000)
    drop_numbers: bool = True
    stop_words: Literal["english"] | None = "english"
    extra_stop_words: list[str] = Field(default_factory=list)
    min_df: int | float = 1
    max_df: int | float = 1.0
    max_vocab: int | None = Field(default=None, ge=1)
    bigrams: bool = False
    bigram_min_df: int = Field(default=2, ge=1)

    @field_validator("min_df", "max_df", mode="before")
    @classmethod
    def _refuse_bool(cls, value, info):
        if isinstance(value, bool):
            raise ValueError(f"{info.field_name} must be an int count or a float fraction, got {value!r}")
        return value

    @field_validator("min_df", "max_df")
    @classmethod
    def _check_df(cls, value: int | float, info) -> int | float:
        if isinstance(value, int):
            if value < 1:
                raise ValueError(f"{info.field_name}={value}: a document count must be >= 1")
        elif not 0.0 < value <= 1.0:
            raise ValueError(f"{info.field_name}={value}: a fraction must be in (0, 1]")
        return value

    @field_validator("extra_stop_words")
    @classmethod
    def _check_stop_words(cls, value: list[str]) -> list[str]:
        return [word.strip() for word in value if word.strip()]

    @model_validator(mode="after")
    def _check_df_order(self) -> "TextOptions":
        if type(self.min_df) is type(self.max_df) and self.min_df > self.max_df:
            raise ValueError(f"min_df={self.min_df} is greater than max_df={self.max_df}")
        return self


# What an upload (the API, ``spectral-topics submit``) gets for the options it does not set:
# besides English stop words, terms in fewer than 5 documents or in more than half of them
# are pruned, as topic modelers expect (gensim's filter_extremes(no_below=5, no_above=0.5)).
# Evidence (bench/quality.py --topics 20 --seeds 0 1 --max-words 1000000 --min-df 2|5|10 on
# python3-doc): spectral+refine NPMI +0.136 / +0.130 / +0.132, within the +-0.01 spread of two
# seeds, on 13,306 / 7,329 / 4,684 terms; 5 halves the vocabulary (and the fit's cost) at no
# measurable loss. TextOptions() itself keeps every term, for library callers that prune on their own.
UPLOAD_DEFAULTS = {"min_df": 5, "max_df": 0.5}


def upload_text_options(values: dict | TextOptions | None) -> TextOptions:
    """TextOptions of an upload: ``values`` over :data:`UPLOAD_DEFAULTS` over the class defaults."""
    if isinstance(values, TextOptions):
        return values
    return TextOptions.model_validate({**UPLOAD_DEFAULTS, **(values or {})})


class IngestLimits(BaseModel):
    """Caps on what one ingestion accepts; breaking one raises InvalidInput naming it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_documents: int = Field(default=5_000_000, ge=1)
    max_document_bytes: int = Field(default=10 * _MIB, ge=1)
    max_archive_members: int = Field(default=100_000, ge=1)
    max_member_bytes: int = Field(default=512 * _MIB, ge=1)
    max_decompressed_bytes: int = Field(default=4096 * _MIB, ge=1)
    max_total_bytes: int = Field(default=2048 * _MIB, ge=1)
