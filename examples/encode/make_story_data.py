"""Raw data for the encode example: a short story told sentence by sentence, as ShareGPT rows whose `embeddings`
entries carry the raw text. Each row is a window of consecutive sentences: the user tells the first ones, the
assistant the last one, so a world model learns "these sentences -> the next sentence" in embedding space.

    python examples/encode/make_story_data.py --out saves/encode_story/raw [--window 4]
"""

import argparse
import os

from wmfactory.data.registry import OPENAI_TAGS, write_rows

HERE = os.path.dirname(os.path.abspath(__file__))


def windows(sentences: list[str], window: int) -> list[dict]:
    rows = []
    for start in range(len(sentences) - window + 1):
        told = "".join(f"<m{i + 1}>" for i in range(window - 1))
        rows.append({"messages": [{"role": "user", "content": f"The story so far: {told}"},
                                  {"role": "assistant", "content": f"Next: <m{window}>"}],
                     "embeddings": {f"m{i + 1}": [{"text": sentences[start + i]}] for i in range(window)}})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="saves/encode_story/raw")
    parser.add_argument("--window", type=int, default=4)
    args = parser.parse_args()
    with open(os.path.join(HERE, "story.txt"), encoding="utf-8") as f:
        sentences = [line.strip() for line in f if line.strip()]
    os.makedirs(args.out, exist_ok=True)
    path = write_rows(args.out, "story", windows(sentences, args.window), {
        "file_name": "story.jsonl", "formatting": "sharegpt",
        "columns": {"messages": "messages", "embeddings": "embeddings"}, "tags": OPENAI_TAGS})
    print(f"{len(sentences)} sentences -> {len(sentences) - args.window + 1} rows in {path}")


if __name__ == "__main__":
    main()
