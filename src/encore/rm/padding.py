"""The pad token of a tokenizer that has none (Llama-3 and 3.1 ship without one).

Padding is masked everywhere in this package, so any id would do for our own forward passes; it matters where a
reader finds the last real token by comparing ids with ``pad_token_id``: ``transformers``' sequence classifiers
(the exported single-score model) pool "the rightmost token that is not the pad token". Padding with EOS is then
wrong for Llama-3.1, whose EOS ``<|eot_id|>`` closes every chat turn: the exported model would skip the response's
closing token that the heads were trained on. So the pad is a special token that never occurs in a text: an added
special token that is neither BOS, EOS nor UNK and does not appear in the chat template, one named for padding or
reserved first (Llama-3 and 3.1: ``<|reserved_special_token_0|>``, id 128002, rather than 3.1's unused
``<|end_of_text|>``); EOS, then UNK, only when the vocabulary has no such token.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


def unused_special_token(tok: Any) -> str | None:
    """An added special token that no chat template produces and that is not BOS/EOS/UNK: the first (by id) named
    ``pad`` or ``reserved``, else the first; None when there is none."""
    template = tok.chat_template if isinstance(getattr(tok, "chat_template", None), str) else ""
    taken = {tok.bos_token, tok.eos_token, tok.unk_token}
    free = [a.content for _, a in sorted(tok.added_tokens_decoder.items())
            if a.special and a.content not in taken and a.content not in template]
    named = [t for t in free if "pad" in t.lower() or "reserved" in t.lower()]
    return (named or free or [None])[0]


def ensure_pad_token(tok: Any) -> Any:
    """Give ``tok`` a pad token when it has none (see the module docstring); returns ``tok``."""
    if tok.pad_token_id is not None:
        return tok
    pad = unused_special_token(tok)
    if pad is None:
        pad = tok.eos_token or tok.unk_token
        log.warning("tokenizer has no pad token and no unused special token: padding with %r, which an exported "
                    "sequence classifier may mistake for padding where it ends a text", pad)
    tok.pad_token = pad
    return tok
