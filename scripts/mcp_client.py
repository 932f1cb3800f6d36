#!/usr/bin/env python3
"""Calls the demo API's MCP endpoint with the official MCP Python SDK and a bearer token.

An independent client for `/mcp`: it initializes, lists the tools, calls `whoami` and
prints the results as JSON. The token is taken as it is; getting one (client credentials,
or the SDK's OAuthClientProvider) is the caller's business.

    python3 -m venv /tmp/mcpvenv && /tmp/mcpvenv/bin/pip install 'mcp>=2.3,<3'
    /tmp/mcpvenv/bin/python scripts/mcp_client.py http://127.0.0.1:5001/mcp "$TOKEN"

The URL and token may also come from MCP_URL and MCP_TOKEN. Exits 1 when the session fails (a
refused token, say) or the tool reports an error, 2 on bad usage.
"""

import asyncio
import json
import os
import sys

import httpx2
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client


async def run(url: str, token: str) -> dict:
    # The SDK's transport takes its headers from the HTTP client it is given.
    http = httpx2.AsyncClient(
        headers={"Authorization": f"Bearer {token}"},
        timeout=httpx2.Timeout(30.0, read=300.0),
    )
    async with http, streamable_http_client(url, http_client=http) as (read, write):
        async with ClientSession(read, write) as session:
            init = await session.initialize()
            tools = await session.list_tools()
            call = await session.call_tool("whoami", {})
    text = [c.text for c in call.content if getattr(c, "type", None) == "text"]
    return {
        "protocol_version": init.protocol_version,
        "server": init.server_info.model_dump(mode="json", exclude_none=True),
        "tools": [t.name for t in tools.tools],
        "whoami": {
            "is_error": bool(call.is_error),
            "structured": call.structured_content,
            "text": text,
        },
    }


def main() -> int:
    args = sys.argv[1:]
    url = args[0] if args else os.environ.get("MCP_URL")
    token = args[1] if len(args) > 1 else os.environ.get("MCP_TOKEN")
    if not url or not token:
        print("usage: mcp_client.py URL TOKEN (or MCP_URL and MCP_TOKEN)", file=sys.stderr)
        return 2
    try:
        result = asyncio.run(run(url, token))
    except Exception as e:  # A refused token surfaces as an exception group from the transport.
        print(f"mcp_client: {e!r}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2))
    return 1 if result["whoami"]["is_error"] else 0


if __name__ == "__main__":
    sys.exit(main())
