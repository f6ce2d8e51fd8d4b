"""Request and response bodies of the explorer's endpoints (map, relevance, top documents,
term lookup, labels, model comparison); the general ones are in app.api.schemas."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

MAX_LABEL_CHARS = 120


class TopicPoint(BaseModel):
    topic: int
    x: float = Field(description="First classical-MDS coordinate of the Jensen-Shannon distances.")
    y: float = Field(description="Second coordinate.")
    share: float = Field(description="Share of the corpus' tokens (circle area).")
    alpha: float
    coherence: float | None = Field(description="NPMI of the top words on held-out documents; null if not measured.")
    label: str | None


class TopicMap(BaseModel):
    model_id: str
    topics: list[TopicPoint]


class RelevantTerm(BaseModel):
    word: str
    weight: float = Field(description="p(w | topic).")
    overall: float = Field(description="p(w) over the corpus (token-share weighted topics).")
    relevance: float | None = Field(description="lambda log p(w|t) + (1 - lambda) log(p(w|t) / p(w)).")


class TopicTerms(BaseModel):
    model_id: str
    topic: int
    relevance_lambda: float
    terms: list[RelevantTerm]


class TopDocument(BaseModel):
    doc_id: str
    weight: float = Field(description="The document's weight on the topic.")
    snippet: str | None = Field(description="The first characters of its text; null for bag-of-words corpora.")
    topics: list[float] = Field(description="Its whole topic mixture.")


class TopicDocuments(BaseModel):
    model_id: str
    topic: int
    documents: list[TopDocument]


class TermTopic(BaseModel):
    topic: int
    weight: float = Field(description="p(term | topic).")
    topic_share: float = Field(description="p(topic | term): the share of the term's uses that fall in this topic.")
    label: str | None


class TermTopics(BaseModel):
    model_id: str
    term: str
    topics: list[TermTopic]


class LabelUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label: str | None = Field(max_length=MAX_LABEL_CHARS, description="The topic's name; null or blank removes it.")


class TopicLabels(BaseModel):
    model_id: str
    topic_labels: dict[str, str]


class MatchedTopics(BaseModel):
    topic_a: int
    topic_b: int
    similarity: float = Field(description="Bhattacharyya coefficient of the two word distributions (1 = identical).")
    label_a: str | None
    label_b: str | None


class ModelComparison(BaseModel):
    model_a: str
    model_b: str
    matches: list[MatchedTopics] = Field(description="One-to-one matches (Hungarian algorithm), most similar first.")
