import numpy as np
import pytest

from wmfactory.data.encoder import IGNORE_INDEX, encode_chunks
from wmfactory.data.template import TEMPLATES, Template, TokenizerTemplate


def vectors(n, d=3, start=0.0):
    return np.arange(start, start + n * d, dtype=np.float32).reshape(n, d)


def encode(tokenizer, turns, groups, rule="next", cutoff=1024, template=None, train_on_prompt=False):
    template = template or TEMPLATES["chatml"]
    keys = {f"m{i + 1}" for i in range(len(groups))}
    chunks = template.render("", turns, tokenizer)
    return encode_chunks(chunks, groups, keys, tokenizer, cutoff, rule, train_on_prompt)


TURNS = [
    ("user", "Day one <m1> and two <m2>"),
    ("assistant", "Day three <m3>"),
    ("user", "Then <m4>"),
    ("assistant", "Finally <m5><m6>"),
]
GROUPS = [vectors(1), vectors(2, start=10), vectors(1, start=20), vectors(3, start=30), vectors(1, start=40),
          vectors(1, start=50)]


def test_slots_expand_each_group_to_its_vectors(tokenizer):
    row = encode(tokenizer, TURNS, GROUPS)
    assert len(row.embedding_positions) == 1 + 2 + 1 + 3 + 1 + 1
    assert row.group_of_vector == [0, 1, 1, 2, 3, 3, 3, 4, 5]
    np.testing.assert_array_equal(np.stack(row.embedding_vectors), np.concatenate(GROUPS))
    positions = row.embedding_positions
    # the vectors of one group sit on consecutive positions
    assert positions[2] == positions[1] + 1 and positions[6] == positions[4] + 2
    # <m5><m6> are adjacent in the text, so their slots are too
    assert positions[8] == positions[7] + 1
    # slots hold the pad id and never carry LM labels
    for p in positions:
        assert row.input_ids[p] == tokenizer.pad_token_id
        assert row.labels[p] == IGNORE_INDEX


def test_text_between_slots_is_the_tokenized_template(tokenizer):
    row = encode(tokenizer, TURNS, GROUPS)
    text_ids = [t for i, t in enumerate(row.input_ids) if i not in set(row.embedding_positions)]
    rendered = TEMPLATES["chatml"].render("", TURNS, tokenizer)
    pieces = "".join(text for text, _ in rendered)
    for key in ["<m1>", "<m2>", "<m3>", "<m4>", "<m5>", "<m6>"]:
        pieces = pieces.replace(key, "")
    assert tokenizer.decode(text_ids) == pieces


@pytest.mark.parametrize(
    "rule, expected_groups",
    [("next", {1, 2, 3, 4, 5}), ("assistant", {2, 4, 5}), ("all", {0, 1, 2, 3, 4, 5})],
)
def test_target_rules_on_a_multi_turn_row(tokenizer, rule, expected_groups):
    row = encode(tokenizer, TURNS, GROUPS, rule=rule)
    targets = {g for g, t in zip(row.group_of_vector, row.embedding_is_target) if t}
    assert targets == expected_groups
    # every vector of a target group is a target
    for g, t in zip(row.group_of_vector, row.embedding_is_target):
        assert t == (g in expected_groups)


def test_lm_labels_only_on_assistant_text(tokenizer):
    row = encode(tokenizer, TURNS, GROUPS)
    labelled = [t for t, label in zip(row.input_ids, row.labels) if label != IGNORE_INDEX]
    assert [label for label in row.labels if label != IGNORE_INDEX] == labelled
    assert tokenizer.decode(labelled) == "Day three <|im_end|>Finally <|im_end|>"
    with_prompt = encode(tokenizer, TURNS, GROUPS, train_on_prompt=True)
    assert sum(label != IGNORE_INDEX for label in with_prompt.labels) == len(row.input_ids) - len(
        row.embedding_positions
    )


def test_truncation_never_cuts_a_group(tokenizer):
    full = encode(tokenizer, TURNS, GROUPS)
    start_of_m4 = full.embedding_positions[4]  # first of the 3 vectors of <m4>
    for cutoff in (start_of_m4 + 1, start_of_m4 + 2):  # would cut <m4> after 1 or 2 of its 3 vectors
        row = encode(tokenizer, TURNS, GROUPS, cutoff=cutoff)
        assert row.group_of_vector == [0, 1, 1, 2]
        assert len(row.input_ids) == start_of_m4 <= cutoff
    whole = encode(tokenizer, TURNS, GROUPS, cutoff=start_of_m4 + 3)
    assert whole.group_of_vector == [0, 1, 1, 2, 3, 3, 3]
    assert len(whole.input_ids) == start_of_m4 + 3
    # text is cut token by token
    short = encode(tokenizer, TURNS, GROUPS, cutoff=3)
    assert len(short.input_ids) == 3 and short.embedding_positions == []


def test_a_target_at_position_zero_is_not_predicted(tokenizer):
    bare = Template(name="bare", prefix="", assistant_suffix="")
    row = encode(tokenizer, [("user", "<m1> x")], [vectors(2)], rule="all", template=bare)
    assert row.embedding_positions == [0, 1]
    assert row.embedding_is_target == [False, True]


def test_tokenizer_template_chunks_match_apply_chat_template(tokenizer):
    turns = [("user", "Hi <m1>"), ("assistant", "Hello <m2>"), ("user", "More"), ("assistant", "Done")]
    chunks = TokenizerTemplate().render("Be brief.", turns, tokenizer)
    messages = [{"role": "system", "content": "Be brief."}] + [{"role": r, "content": c} for r, c in turns]
    assert "".join(text for text, _ in chunks) == tokenizer.apply_chat_template(messages, tokenize=False)
    assert [text for text, trainable in chunks if trainable] == ["Hello <m2><|im_end|>\n", "Done<|im_end|>\n"]
