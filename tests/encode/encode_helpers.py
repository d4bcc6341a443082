"""Raw inputs for the encode tests, and the encoders' outputs computed directly with transformers (one item per
forward pass, pooled by hand with numpy), to compare `wmfactory encode` against."""

import json
from pathlib import Path

import numpy as np
from conftest import REPO, TAGS

MODELS = REPO / "examples" / "models"
TINY_BERT, TINY_VIT, TINY_WAV2VEC2 = (str(MODELS / name) for name in ("tiny-bert", "tiny-vit", "tiny-wav2vec2"))
STORY = ["The fox woke up before dawn.", "It was very hungry.", "It walked down to the river.",
         "A heron stood in the water.", "The fox waited in the reeds.", "The heron flew away."]


def write_raw_dataset(folder: Path, name: str, rows: list[dict]) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps(rows))
    info_path = folder / "dataset_info.json"
    info = json.loads(info_path.read_text()) if info_path.exists() else {}
    info[name] = {"file_name": f"{name}.json", "formatting": "sharegpt",
                  "columns": {"messages": "messages", "embeddings": "embeddings"}, "tags": TAGS}
    info_path.write_text(json.dumps(info))
    return str(folder)


def story_rows(window: int = 3) -> list[dict]:
    """Windows of consecutive sentences: `<m1>..<m{window-1}>` told by the user, the last by the assistant."""
    rows = []
    for start in range(len(STORY) - window + 1):
        told = "".join(f"<m{i + 1}>" for i in range(window - 1))
        rows.append({"messages": [{"role": "user", "content": told},
                                  {"role": "assistant", "content": f"<m{window}>"}],
                     "embeddings": {f"m{i + 1}": [{"text": STORY[start + i]}] for i in range(window)}})
    return rows


def direct_text_vectors(texts: list[str], pooling: str = "mean") -> np.ndarray:
    """`[len(texts), h]`: each text alone through tiny-bert, mean (or CLS) of its last hidden states."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer, model = AutoTokenizer.from_pretrained(TINY_BERT), AutoModel.from_pretrained(TINY_BERT).eval()
    out = []
    for text in texts:
        with torch.no_grad():
            hidden = model(**tokenizer(text, return_tensors="pt")).last_hidden_state[0].numpy()  # [t, h]
        out.append(hidden[0] if pooling == "cls" else hidden.mean(axis=0))
    return np.stack(out)


def read_safetensors(path) -> tuple[np.ndarray, dict]:
    """(the tensor `embedding`, the metadata) through the safetensors library itself."""
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as f:
        return f.get_tensor("embedding"), f.metadata()


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
