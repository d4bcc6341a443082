import pytest

from wmfactory.data.placeholders import Placeholder, map_placeholders, split_text
from wmfactory.extras.errors import DataError


def test_occurrences_take_files_in_reading_order():
    texts = ["", "<m1> then <ecg> then <m1>", "<m2><ecg>"]
    embeddings = {"m1": ["a", "b"], "ecg": ["e0", "e1"], "m2": ["c"]}
    found = map_placeholders(texts, embeddings, "d", 0)
    assert found == [
        Placeholder("m1", 0, 1), Placeholder("ecg", 0, 1), Placeholder("m1", 1, 1),
        Placeholder("m2", 0, 2), Placeholder("ecg", 1, 2),
    ]
    assert [embeddings[p.key][p.occurrence] for p in found] == ["a", "e0", "b", "c", "e1"]


def test_other_angle_brackets_are_text():
    assert split_text("<think>x</think><m1><b>", {"m1": []}) == ["<think>x</think>", ("m1",), "<b>"]
    # a key of the row is a placeholder whatever its form; m<digits> always is
    assert split_text("<ecg><m7>", {"ecg": []}) == [("ecg",), ("m7",)]


@pytest.mark.parametrize(
    "texts, embeddings, message",
    [
        (["<m1><m3>"], {"m1": ["a"]}, "row 5, key 'm3': placeholder <m3> has no entry"),
        (["<m1><m1>"], {"m1": ["a"]}, "key 'm1': <m1> occurs 2 time(s) but `embeddings` lists 1 file(s)"),
        (["<m1>"], {"m1": ["a"], "m2": ["b"]}, "key 'm2': `embeddings` entry is never referenced"),
    ],
)
def test_mapping_errors_name_dataset_row_and_key(texts, embeddings, message):
    with pytest.raises(DataError) as err:
        map_placeholders(texts, embeddings, "demo", 5)
    assert "dataset 'demo'" in str(err.value)
    assert message in str(err.value)
