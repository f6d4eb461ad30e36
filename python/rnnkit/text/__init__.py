"""Character-level text: reading files, vocabularies, truncated-BPTT batches and a
character language model that trains (``fit``) and writes (``generate``).

    >>> import rnnkit as rk
    >>> text = rk.text.read_text(rk.text.default_corpus_path())
    >>> vocab = rk.text.Vocab.from_text(text)
    >>> train, val = rk.text.split_train_val(vocab.encode(text), val_fraction=0.05)
    >>> lm = rk.text.CharLM(vocab, cell="lstm", hidden_size=256, seed=0)
    >>> history = lm.fit(train, val_data=val, max_time=60)          # doctest: +SKIP
    >>> lm.generate_text("Pierre", 200, temperature=0.8, seed=1)  # doctest: +SKIP

Pieces (one module each: ``files``, ``vocab``, ``batching``, ``sampling``, ``model``)
------
:func:`read_text`
    A text file in UTF-8 (with or without BOM), UTF-16/32 with a BOM, or (when it
    is not valid UTF-8) Windows-1252; CRLF and CR line endings become LF. Binary
    files raise :class:`TextFileError` saying so.
:class:`Vocab`
    The characters of a text, sorted by code point (so the same text always gives
    the same ids); ``encode`` / ``decode``; a policy for characters it has not
    seen (``unknown="error" | "skip" | "replace"``), saved with the model.
:func:`split_train_val`, :class:`BPTTBatches`
    A held-out validation tail; the training part cut into B parallel streams
    read in consecutive chunks of T characters, so the hidden state at the end
    of one chunk is the right start for the next (stateful truncated BPTT); a
    :class:`rnnkit.train.DataSource`, so :func:`rnnkit.fit` trains on it.
:class:`CharLM`
    ``Embedding -> LSTM/GRU/RNN (stacked) -> Linear -> softmax``, a
    :class:`rnnkit.Sequential` underneath (so checkpoints are ordinary rnnkit
    checkpoints, with the vocabulary inside). ``fit`` (a call of
    :func:`rnnkit.fit`) reports train and
    validation loss in nats and bits per character; ``generate`` streams
    characters one step at a time on the layers' single-step path
    (``layer.stepper``): the prime is read once, the state is carried, nothing
    is ever re-run.

Shapes
------
N characters, V vocabulary, B streams (batch), T chunk length, E embedding,
H hidden, L layers. Ids are int64 (N,); batches (B, T); logits (B, T, V).

The default corpus
------------------
``rnnkit/data/war_and_peace_opening.txt``: the first 400,192 characters (76
distinct) of Leo Tolstoy's *War and Peace* in the Louise and Aylmer Maude
translation (public domain), UTF-8, LF line endings. It ships inside the
package, so ``rnnkit train`` works with no download.
"""

from ..train import History, TrainPosition
from .batching import BPTTBatches, eval_layout, split_train_val
from .files import (
    DEFAULT_CORPUS,
    TextFileError,
    decode_text,
    default_corpus_path,
    load_text,
    read_text,
)
from .model import LN2 as LN2
from .model import CharLM
from .model import _nll_sum as _nll_sum
from .model import _rows as _rows
from .sampling import Sampler, sample_logits
from .sampling import _check_sampling as _check_sampling
from .vocab import UNK, Vocab
from .vocab import UNKNOWN_POLICIES as UNKNOWN_POLICIES

TextHistory = History  # deprecated name: CharLM.fit returns the History of rnnkit.fit

__all__ = [
    "DEFAULT_CORPUS",
    "UNK",
    "BPTTBatches",
    "CharLM",
    "Sampler",
    "TextFileError",
    "TextHistory",
    "TrainPosition",
    "Vocab",
    "decode_text",
    "default_corpus_path",
    "eval_layout",
    "load_text",
    "read_text",
    "sample_logits",
    "split_train_val",
]
