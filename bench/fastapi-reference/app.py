"""The original service's contract in FastAPI, as a benchmark peer for scripts/bench.sh.

What a Python team would otherwise run: FastAPI + uvicorn (uvloop, httptools), one aiohttp
session kept for the process, the same persona routing, the same prompt and the same Vertex AI
generateContent call as the component, against the same emulator. It is a reference for speed
and memory, not a second implementation to maintain: no streaming, retries or history.

    VERTEX_ENDPOINT=http://127.0.0.1:9000 PROJECT_ID=bench ACCESS_TOKEN=bench \
        uvicorn app:app --host 127.0.0.1 --port 8000 --loop uvloop --http httptools
"""

import os
from contextlib import asynccontextmanager

import aiohttp
from fastapi import FastAPI, HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, field_validator

ENDPOINT = os.environ.get("VERTEX_ENDPOINT", "http://127.0.0.1:9000").rstrip("/")
PROJECT = os.environ.get("PROJECT_ID", "bench")
LOCATION = os.environ.get("LOCATION", "global")
MODEL = os.environ.get("MODEL", "gemini-3.5-flash")
TOKEN = os.environ.get("ACCESS_TOKEN", "bench")
URL = (
    f"{ENDPOINT}/v1/projects/{PROJECT}/locations/{LOCATION}"
    f"/publishers/google/models/{MODEL}:generateContent"
)

session: aiohttp.ClientSession | None = None


@asynccontextmanager
async def lifespan(_: FastAPI):
    global session
    # As many upstream connections as requests in flight (the bench runs 1000 at once).
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0),
        timeout=aiohttp.ClientTimeout(total=60),
    )
    yield
    await session.close()


app = FastAPI(title="Ion Mentoring API (FastAPI reference)", version="1.0.0", lifespan=lifespan)


class ChatRequest(BaseModel):
    message: str = Field(min_length=1, max_length=1000)

    @field_validator("message")
    @classmethod
    def not_blank(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("message must not be blank")
        return value


# Persona routing as the original described it (docs/api.md, "Compatibility with the original service").
TONES = [
    ("urgent", ("급해", "빨리", "!!!", "안 돼"), 0.7),
    ("curious", ("궁금", "?", "혹시", "어떻게"), 0.7),
    ("frustrated", ("답답", "왜", "이상", "문제"), 0.6),
    ("analytical", ("분석", "확인", "리포트", "결과"), 0.6),
]
PERSONAS = {
    "Lua": ("frustrated", "playful", "anxious"),
    "Elro": ("curious", "analytical", "calm"),
    "Riri": ("analytical", "calm", "curious"),
    "Nana": ("urgent", "confused", "collaborative"),
}
PACE_SCORE = {"burst": 0.2, "flowing": 0.1, "contemplative": 0.3}
INTENT_SCORE = {"inquiry": 0.1, "expressive": 0.2, "statement": 0.1}


def resonance(message: str) -> dict:
    words = len(message.split())
    sentences = max(1, sum(message.count(c) for c in ".?!") or 1)
    punctuation = sum(1 for c in message if c in ".,?!;:") / max(1, len(message))
    per_sentence = words / sentences
    if per_sentence < 4 and punctuation > 0.08:
        pace = "burst"
    elif per_sentence >= 10:
        pace = "contemplative"
    else:
        pace = "flowing"
    tone, tone_confidence = "calm", 0.5
    for name, keys, confidence in TONES:
        if any(k in message for k in keys):
            tone, tone_confidence = name, confidence
            break
    marks = max(1, sum(message.count(c) for c in ".?!"))
    if message.count("?") / marks > 0.3:
        intent = "inquiry"
    elif message.count("!") / marks > 0.3:
        intent = "expressive"
    else:
        intent = "statement"
    scores = {
        name: (0.5 if tone in tones else 0.0) + PACE_SCORE[pace] + INTENT_SCORE[intent]
        for name, tones in PERSONAS.items()
    }
    persona = max(scores, key=lambda n: (scores[n], -list(PERSONAS).index(n)))
    ranked = sorted(scores, key=lambda n: -scores[n])
    return {
        "persona": persona,
        "key": f"{tone}-{pace}-{intent}",
        "confidence": round(scores[persona], 2),
        "rhythm": {"pace": pace, "avg_length": round(per_sentence, 2)},
        "tone": {"primary": tone, "confidence": tone_confidence},
        "secondary": ranked[1],
    }


def gemini_request(message: str, r: dict) -> dict:
    system = (
        f"당신은 Ion 멘토링 서비스의 멘토 {r['persona']}입니다. "
        f"The user's message was analysed as resonance key `{r['key']}`. "
        "Answer in the language the user wrote in (Korean by default). "
        "Keep the answer focused and under about 300 words."
    )
    return {
        "contents": [{"role": "user", "parts": [{"text": message}]}],
        "systemInstruction": {"parts": [{"text": system}]},
        "generationConfig": {"temperature": 0.7, "maxOutputTokens": 1024, "candidateCount": 1},
    }


@app.get("/")
async def root() -> dict:
    return {
        "service": "Ion Mentoring API",
        "version": "1.0.0",
        "status": "running",
        "docs": "/docs",
        "health": "/health",
    }


@app.get("/health")
async def health() -> dict:
    return {"status": "healthy", "version": "1.0.0", "pipeline_ready": True}


@app.post("/chat")
async def chat(request: ChatRequest):
    r = resonance(request.message)
    assert session is not None
    async with session.post(
        URL,
        json=gemini_request(request.message, r),
        headers={"authorization": f"Bearer {TOKEN}"},
    ) as upstream:
        if upstream.status != 200:
            return JSONResponse(
                status_code=502,
                content={"error": "upstream error", "status_code": 502, "code": "upstream_error"},
            )
        body = await upstream.json()
    try:
        text = "".join(p.get("text", "") for p in body["candidates"][0]["content"]["parts"])
    except (KeyError, IndexError, TypeError) as e:
        raise HTTPException(status_code=502, detail="malformed upstream answer") from e
    return {
        "content": text,
        "persona_used": r["persona"],
        "resonance_key": r["key"],
        "confidence": r["confidence"],
        "metadata": {
            "rhythm": r["rhythm"],
            "tone": r["tone"],
            "routing": {"secondary_persona": r["secondary"], "reasoning": "resonance score"},
        },
    }
