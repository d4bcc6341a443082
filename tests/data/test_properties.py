"""Property-based checks of the sequence rules over random conversations: slots = vectors, targets by rule, no LM
label on a slot, no group cut in half, the length bound respected."""

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wmfactory.data.encoder import IGNORE_INDEX, encode_chunks
from wmfactory.data.placeholders import map_placeholders
from wmfactory.data.streams import stream_of
from wmfactory.data.template import TEMPLATES, TokenizerTemplate

WORDS = ["day", "state", "the patient", "reading", "<think>", "x<b>y", "", " ", "\n", "é"]


@st.composite
def conversations(draw):
    turns = []
    keys: list[str] = []
    counts: dict[str, int] = {}
    group_turns = []
    for turn in range(draw(st.integers(1, 4))):
        pieces = []
        for _ in range(draw(st.integers(0, 4))):
            if draw(st.booleans()):
                key = draw(st.sampled_from(keys + [f"m{len(keys) + 1}", "ecg"])) if keys else "m1"
                if key not in keys:
                    keys.append(key)
                counts[key] = counts.get(key, 0) + 1
                pieces.append(f"<{key}>")
                group_turns.append(turn)
            else:
                pieces.append(draw(st.sampled_from(WORDS)))
        turns.append(("user" if turn % 2 == 0 else "assistant", "".join(pieces)))
    embeddings = {key: [f"{key}-{i}" for i in range(n)] for key, n in counts.items()}
    sizes = [draw(st.integers(1, 3)) for _ in group_turns]
    return turns, embeddings, sizes, group_turns


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(conversation=conversations(), rule=st.sampled_from(["next", "assistant", "all"]),
       cutoff=st.integers(1, 120), template_name=st.sampled_from(["chatml", "default", "empty", "tokenizer"]))
def test_sequence_invariants(tokenizer, conversation, rule, cutoff, template_name):
    turns, embeddings, sizes, group_turns = conversation
    placeholders = map_placeholders([""] + [content for _, content in turns], embeddings, "prop", 0)
    assert len(placeholders) == len(sizes)
    # group g holds `sizes[g]` vectors whose every value is g, so each vector says which group it came from
    groups = [np.full((n, 3), float(g), dtype=np.float32) for g, n in enumerate(sizes)]
    template = TokenizerTemplate() if template_name == "tokenizer" else TEMPLATES[template_name]
    row = encode_chunks(template.render("", turns, tokenizer), groups, embeddings, tokenizer, cutoff, rule)

    assert len(row.input_ids) == len(row.labels) <= cutoff
    assert len(row.embedding_positions) == len(row.embedding_vectors) == len(row.embedding_is_target)
    kept = sorted(set(row.group_of_vector))
    assert kept == list(range(len(kept)))  # whole groups, in reading order, a prefix of the row's groups
    for g in kept:
        indices = [i for i, group in enumerate(row.group_of_vector) if group == g]
        assert len(indices) == sizes[g]  # never cut in half
        positions = [row.embedding_positions[i] for i in indices]
        assert positions == list(range(positions[0], positions[0] + sizes[g]))
    for i, (g, position) in enumerate(zip(row.group_of_vector, row.embedding_positions)):
        assert row.embedding_vectors[i][0] == g
        assert row.labels[position] == IGNORE_INDEX
        in_assistant = turns[group_turns[g]][0] == "assistant"
        stream = stream_of(placeholders[g].key)  # `next`: a group after the first of its stream
        earlier = any(stream_of(p.key) == stream for p in placeholders[:g])
        expected = {"next": earlier, "assistant": in_assistant, "all": True}[rule] and position > 0
        assert row.embedding_is_target[i] == expected
    if len(kept) < len(sizes):  # a group was dropped: the sequence ends before where it would have started
        assert len(row.input_ids) + sizes[len(kept)] > cutoff or len(row.input_ids) == cutoff
