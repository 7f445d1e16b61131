""" "View code": the playground's current request as a program for each client a user may have, with
the real endpoint filled in and the key read from `AZURE_INFERENCE_CREDENTIAL`. Every string that
came from the user is written with the target language's own quoting (never pasted into a template).
"""

from __future__ import annotations

import json
import pprint
import shlex
from typing import Any

KEY_VARIABLE = "AZURE_INFERENCE_CREDENTIAL"
LANGUAGES = ("python", "javascript", "openai", "mistralai", "curl")
_SAMPLING = ("temperature", "top_p", "max_tokens", "stop", "seed", "presence_penalty", "frequency_penalty")
_EXTRAS = ("safe_prompt",)
"""Fields only Mistral's API defines: the Azure route takes them with `extra-parameters: pass-through`."""


def _py(value: Any, indent: int) -> str:
    text = pprint.pformat(value, width=100 - indent, sort_dicts=False)
    return text.replace("\n", "\n" + " " * indent)


def _kwargs(pairs: list[tuple[str, Any]], indent: int = 4) -> str:
    pad = " " * indent
    return "".join(f"{pad}{name}={_py(value, indent)},\n" for name, value in pairs)


def request_fields(body: dict[str, Any]) -> dict[str, Any]:
    """The request without `stream` (the snippets print one whole answer)."""
    return {k: v for k, v in body.items() if k != "stream"}


def python_azure(endpoint: str, body: dict[str, Any]) -> str:
    fields = request_fields(body)
    imports = ["from azure.ai.inference import ChatCompletionsClient"]
    pairs: list[tuple[str, Any]] = [("messages", fields.get("messages", []))]
    pairs += [(k, fields[k]) for k in _SAMPLING if k in fields]
    schema = ""
    fmt = fields.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_object":
        pairs.append(("response_format", "json_object"))
    elif isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        imports.append("from azure.ai.inference.models import JsonSchemaFormat")
        spec = fmt.get("json_schema") or {}
        arguments = {k: spec[k] for k in ("name", "schema", "description", "strict") if k in spec}
        schema = "\n" + "".join(f"    {k}={_py(v, 4)},\n" for k, v in arguments.items())
    for name in ("tools", "tool_choice"):
        if name in fields:
            pairs.append((name, fields[name]))
    extras = {k: fields[k] for k in _EXTRAS if k in fields}
    call = _kwargs(pairs)
    if schema:
        call += f"    response_format=JsonSchemaFormat({schema}    ),\n"
    if extras:
        call += f"    model_extras={_py(extras, 4)},  # sent with the header extra-parameters: pass-through\n"
    return (
        "import os\n\n" + "\n".join(imports) + "\nfrom azure.core.credentials import AzureKeyCredential\n\n"
        "client = ChatCompletionsClient(\n"
        f"    endpoint={endpoint!r},\n"
        f'    credential=AzureKeyCredential(os.environ["{KEY_VARIABLE}"]),\n'
        ")\n\n"
        "response = client.complete(\n" + call + ")\n\n"
        "print(response.choices[0].message.content)\n"
        "print(response.usage)\n"
    )


def python_openai(endpoint: str, deployment: str, body: dict[str, Any]) -> str:
    fields = request_fields(body)
    pairs: list[tuple[str, Any]] = [("model", deployment), ("messages", fields.get("messages", []))]
    pairs += [(k, fields[k]) for k in (*_SAMPLING, "response_format", "tools", "tool_choice") if k in fields]
    extras = {k: fields[k] for k in _EXTRAS if k in fields}
    if extras:
        pairs.append(("extra_body", extras))
    return (
        "import os\n\n"
        "from openai import OpenAI\n\n"
        "# The SDK posts to {base_url}/chat/completions: /v1 is the deployment's Mistral route.\n"
        "client = OpenAI(\n"
        f"    base_url={endpoint + '/v1'!r},\n"
        f'    api_key=os.environ["{KEY_VARIABLE}"],\n'
        ")\n\n"
        "response = client.chat.completions.create(\n" + _kwargs(pairs) + ")\n\n"
        "print(response.choices[0].message.content)\n"
        "print(response.usage)\n"
    )


def python_mistral(endpoint: str, deployment: str, body: dict[str, Any]) -> str:
    fields = request_fields(body)
    renamed = {"seed": "random_seed"}
    pairs: list[tuple[str, Any]] = [("model", deployment), ("messages", fields.get("messages", []))]
    pairs += [
        (renamed.get(k, k), fields[k])
        for k in (*_SAMPLING, "response_format", "tools", "tool_choice", *_EXTRAS)
        if k in fields
    ]
    return (
        "import os\n\n"
        "from mistralai.client import Mistral\n\n"
        "# The Mistral SDK appends /v1/chat/completions to server_url itself.\n"
        "client = Mistral(\n"
        f'    api_key=os.environ["{KEY_VARIABLE}"],\n'
        f"    server_url={endpoint!r},\n"
        ")\n\n"
        "response = client.chat.complete(\n" + _kwargs(pairs) + ")\n\n"
        "print(response.choices[0].message.content)\n"
        "print(response.usage)\n"
    )


def _pass_through(fields: dict[str, Any]) -> bool:
    return any(k in fields for k in _EXTRAS)


def javascript(endpoint: str, body: dict[str, Any]) -> str:
    fields = request_fields(body)
    options = ""
    if endpoint.startswith("http://"):
        options = "  { allowInsecureConnection: true }, // the endpoint is plain http://\n"
    request = "  body: " + json.dumps(fields, indent=2, ensure_ascii=False).replace("\n", "\n  ") + ",\n"
    if _pass_through(fields):
        request += '  headers: { "extra-parameters": "pass-through" },\n'
    return (
        'import ModelClient, { isUnexpected } from "@azure-rest/ai-inference";\n'
        'import { AzureKeyCredential } from "@azure/core-auth";\n\n'
        "const client = ModelClient(\n"
        f"  {json.dumps(endpoint)},\n"
        f"  new AzureKeyCredential(process.env.{KEY_VARIABLE}),\n" + options + ");\n\n"
        'const response = await client.path("/chat/completions").post({\n' + request + "});\n\n"
        "if (isUnexpected(response)) {\n"
        "  throw new Error(response.body.error.message);\n"
        "}\n"
        "console.log(response.body.choices[0].message.content);\n"
        "console.log(response.body.usage);\n"
    )


def curl(endpoint: str, body: dict[str, Any]) -> str:
    fields = request_fields(body)
    headers = [f'-H "api-key: ${KEY_VARIABLE}"', '-H "Content-Type: application/json"']
    if _pass_through(fields):
        headers.append('-H "extra-parameters: pass-through"')
    lines = [f"curl -sS {shlex.quote(endpoint + '/chat/completions')}", *headers, "-d @- <<'JSON'"]
    return " \\\n  ".join(lines) + "\n" + json.dumps(fields, indent=2, ensure_ascii=False) + "\nJSON\n"


def snippets(endpoint: str, deployment: str, body: dict[str, Any]) -> dict[str, str]:
    """Every language's program for one request `body` (as the playground sends it)."""
    return {
        "python": python_azure(endpoint, body),
        "javascript": javascript(endpoint, body),
        "openai": python_openai(endpoint, deployment, body),
        "mistralai": python_mistral(endpoint, deployment, body),
        "curl": curl(endpoint, body),
        "json": json.dumps(request_fields(body), indent=2, ensure_ascii=False) + "\n",
    }
