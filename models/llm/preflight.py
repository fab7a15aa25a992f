"""One quick call before any work: is an OpenAI-compatible endpoint there, and does it take the key?

A run against a wrong URL would otherwise spend its whole retry budget on every request (minutes, thousands
of connection errors) before failing; this fails in seconds with one line naming the variable.
"""

import urllib.error
import urllib.request

from models.llm.config import GatewayConfig, api_key_from_env

BASE_URL_VARIABLE = "SETLIST_LLM__BASE_URL"


def endpoint_problem(config: GatewayConfig, timeout_s: float = 5.0) -> str | None:
    """None when `GET {base_url}/models` (which OpenAI, vLLM, Ollama and llama.cpp all serve) answers, or
    when offline; otherwise why not, without the key or the server's answer text (which may echo the key)."""
    if config.base_url is None:
        return None
    key = api_key_from_env()
    headers = {"Authorization": f"Bearer {key.get_secret_value()}"} if key else {}
    url = config.base_url.rstrip("/") + "/models"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout_s):
            return None
    except urllib.error.HTTPError as err:
        if err.code == 429:
            return None  # there, and busy: the gateway waits and retries
        if err.code in (401, 403):
            return f"{BASE_URL_VARIABLE}={config.base_url}: the endpoint refused the API key (HTTP {err.code}); check SETLIST_LLM_API_KEY"
        return (
            f"{BASE_URL_VARIABLE}={config.base_url}: GET {url} answered HTTP {err.code}, so this is not an "
            "OpenAI-compatible API (does the URL end in /v1?)"
        )
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        return f"{BASE_URL_VARIABLE}={config.base_url}: the endpoint does not answer ({reason})"
