from __future__ import annotations

import collections
import pickle
from pathlib import Path

import pytest

from aimi.safety.word_index import Vocabulary, load_vocabulary


class Tokenizer:
    """Pickled under this module's name, then renamed to the Keras class in the bytes."""


def _fake_keras_tokenizer_pickle(path: Path, **overrides: object) -> None:
    """A pickle shaped like the package's: a keras Tokenizer holding OrderedDict/defaultdict state."""
    tokenizer = Tokenizer()
    state: dict[str, object] = {
        "word_counts": collections.OrderedDict([("hello", 3), ("world", 2)]),
        "word_docs": collections.defaultdict(int, {"hello": 1}),
        "filters": '!"#$%&()*+,-./:;<=>?@[\\]^_`{|}~\t\n',
        "split": " ",
        "lower": True,
        "num_words": 3,
        "char_level": False,
        "oov_token": None,
        "analyzer": None,
        "word_index": {"hello": 1, "world": 2, "rare": 3, "rarer": 7},
    }
    state.update(overrides)
    tokenizer.__dict__.update(state)
    # Protocol 3 names classes with the text GLOBAL opcode, so the module can be swapped in place.
    data = pickle.dumps(tokenizer, protocol=3)
    ours = f"c{__name__}\nTokenizer\n".encode()
    assert ours in data
    path.write_bytes(data.replace(ours, b"ckeras.src.legacy.preprocessing.text\nTokenizer\n"))


def test_a_keras_tokenizer_pickle_becomes_a_plain_vocabulary_trimmed_to_num_words(tmp_path: Path) -> None:
    _fake_keras_tokenizer_pickle(tmp_path / "tokenizer.pickle")
    vocabulary = load_vocabulary(tmp_path / "tokenizer.pickle")
    assert isinstance(vocabulary, Vocabulary)
    assert vocabulary.word_index == {"hello": 1, "world": 2}
    assert vocabulary.num_words == 3


def test_the_vocabulary_tokenizes_as_keras_does(tmp_path: Path) -> None:
    _fake_keras_tokenizer_pickle(tmp_path / "tokenizer.pickle")
    vocabulary = load_vocabulary(tmp_path / "tokenizer.pickle")
    assert vocabulary.ids("Hello, WORLD!\tunknown hello rare") == [1, 2, 1]
    assert vocabulary.ids("") == []


class _Boom:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("this must never run",))


def test_a_pickle_that_names_any_other_callable_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "tokenizer.pickle"
    path.write_bytes(pickle.dumps(_Boom()))
    with pytest.raises(pickle.UnpicklingError, match=r"builtins\.print"):
        load_vocabulary(path)


def test_os_system_in_a_pickle_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "tokenizer.pickle"
    path.write_bytes(b"cos\nsystem\n(S'echo pwned'\ntR.")
    with pytest.raises(pickle.UnpicklingError, match=r"os\.system"):
        load_vocabulary(path)


def test_a_pickle_of_something_else_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "tokenizer.pickle"
    path.write_bytes(pickle.dumps({"word_index": {}}))
    with pytest.raises(ValueError, match="does not hold a Keras Tokenizer"):
        load_vocabulary(path)


def test_an_out_of_vocabulary_tokenizer_is_not_supported(tmp_path: Path) -> None:
    _fake_keras_tokenizer_pickle(tmp_path / "tokenizer.pickle", oov_token="<unk>")
    with pytest.raises(ValueError, match="not supported"):
        load_vocabulary(tmp_path / "tokenizer.pickle")


def test_the_shipped_pickle_loads_through_the_restricted_unpickler(toxicity_model: object) -> None:
    from aimi.safety.classifier import package_model_dir

    vocabulary = load_vocabulary(package_model_dir() / "tokenizer.pickle")
    assert vocabulary.num_words == 20_000
    assert len(vocabulary.word_index) == 19_999
    assert max(vocabulary.word_index.values()) == 19_999
    assert vocabulary.ids("you are so dumb") == [
        vocabulary.word_index[w] for w in ("you", "are", "so", "dumb")
    ]
