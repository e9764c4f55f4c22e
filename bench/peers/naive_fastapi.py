"""The naive Python proxy a developer would write from the seed: FastAPI + httpx +
`StreamingResponse`, the Express server's loop translated line by line. A benchmark peer only.

    UPSTREAM=http://127.0.0.1:9100/stream PORT=9300 python -m bench.peers.naive_fastapi
"""

import json
import os
from collections.abc import AsyncIterator

import httpx
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse

UPSTREAM = os.environ.get("UPSTREAM", "http://127.0.0.1:9100/stream")
app = FastAPI()
# One shared client; httpx's default pool (100 connections) would queue streams beyond that.
client = httpx.AsyncClient(timeout=None, limits=httpx.Limits(max_connections=None))


@app.post("/chat-stream")
async def chat_stream(request: Request) -> StreamingResponse:
    body = await request.json()

    async def events() -> AsyncIterator[str]:
        async with client.stream("POST", UPSTREAM, json={"prompt": body["message"]}) as upstream:
            async for chunk in upstream.aiter_text():
                yield f"data: {json.dumps({'token': chunk})}\n\n"
        yield "data: [DONE]\n\n"

    headers = {"Cache-Control": "no-cache", "Connection": "keep-alive"}
    return StreamingResponse(events(), media_type="text/event-stream", headers=headers)


if __name__ == "__main__":
    port = int(os.environ.get("PORT", "9300"))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
