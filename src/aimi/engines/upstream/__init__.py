"""`UpstreamEngine`: forwards chat to an OpenAI-compatible server (vLLM, llama-server, Ollama, the
Mistral API, another `aimi serve`) and reads its stream back as engine events.

The source is the server's URL: its root (`http://gpu-box:8000`), its `/v1` base, or an aimi
deployment endpoint (`http://aimi:8000/deployments/NAME`). Chat goes to `{base}/v1/chat/completions`,
always streamed. The model sent upstream is, in this order: the URL's fragment `#model=ID`, a model
the server lists under the catalog offer's name, the first model of `GET {base}/v1/models`, or (from a
server that has no model list, like aimi) the `model_name` of `GET {base}/info`.

The server templates the conversation, lays out the tools and enforces the response format, so this
engine implements the chat engine port (it takes the `Conversation`) and has no tokenizer:
`count_tokens` is an estimate (about one token per word, number group or punctuation mark), and usage
is the server's own whenever it reports it. The calls the server makes come as one `ToolCalls` event.
"""

from aimi.engines.upstream.answer import estimate_tokens
from aimi.engines.upstream.engine import UpstreamEngine
from aimi.engines.upstream.source import UpstreamSource

__all__ = ["UpstreamEngine", "UpstreamSource", "estimate_tokens"]
