"""Chat templates. A template renders a conversation into text chunks `(text, trainable)`: `trainable` marks the
assistant answers (content and end-of-turn token), which carry LM labels. Placeholders stay in the text as `<KEY>`;
the encoder turns them into embedding slots afterwards.

The tokenizer's own chat template is used when `template` is unset; base models without one (e.g. Llama-3.2-1B)
fall back to `empty`, as in LLaMA-Factory, with a warning. Built-in templates are registered by name."""

from dataclasses import dataclass
from typing import Optional

from ..extras.errors import DataError
from ..extras.logging import get_logger
from .converter import ASSISTANT, USER

logger = get_logger(__name__)
Chunks = list[tuple[str, bool]]


@dataclass(frozen=True)
class Template:
    """A string template. `{content}`, `{bos}` and `{eos}` are filled in; an assistant turn renders as
    `assistant_prefix` (prompt), `{content}` + `assistant_suffix` (trainable), `separator` (prompt)."""

    name: str
    prefix: str = "{bos}"
    system: str = "{content}"
    user: str = "{content}"
    assistant_prefix: str = ""
    assistant_suffix: str = "{eos}"
    separator: str = ""
    default_system: str = ""

    def render(self, system: str, turns: list[tuple[str, str]], tokenizer) -> Chunks:
        fill = {"bos": tokenizer.bos_token or "", "eos": tokenizer.eos_token or ""}
        system = system or self.default_system
        prompt = self.prefix.format(**fill) + (self.system.format(content=system, **fill) if system else "")
        chunks: Chunks = []
        for role, content in turns:
            if role == USER:
                prompt += self.user.format(content=content, **fill)
            else:
                prompt += self.assistant_prefix.format(**fill)
                chunks.append((prompt, False))
                chunks.append((content + self.assistant_suffix.format(**fill), True))
                prompt = self.separator.format(**fill)
        chunks.append((prompt, False))
        return [(text, trainable) for text, trainable in chunks if text]


@dataclass(frozen=True)
class TokenizerTemplate:
    """The tokenizer's own Jinja chat template. An assistant answer is what rendering the conversation up to it adds
    to rendering the conversation before it with the generation prompt (the prefix rule TRL also uses)."""

    name: str = "tokenizer"

    def render(self, system: str, turns: list[tuple[str, str]], tokenizer) -> Chunks:
        messages = ([{"role": "system", "content": system}] if system else []) + [
            {"role": role, "content": content} for role, content in turns
        ]
        offset = 1 if system else 0
        chunks: Chunks = []
        consumed = ""
        for i, (role, _) in enumerate(turns):
            if role != ASSISTANT:
                continue
            prompt = self._apply(tokenizer, messages[: offset + i], add_generation_prompt=True)
            full = self._apply(tokenizer, messages[: offset + i + 1], add_generation_prompt=False)
            if not (prompt.startswith(consumed) and full.startswith(prompt)):
                raise ValueError(
                    "The tokenizer's chat template does not render conversations as growing prefixes (it rewrites "
                    "earlier turns), so assistant answers cannot be located. Set `template` to a built-in one: "
                    + ", ".join(TEMPLATES)
                )
            chunks.append((prompt[len(consumed):], False))
            chunks.append((full[len(prompt):], True))
            consumed = full
        whole = self._apply(tokenizer, messages, add_generation_prompt=False)
        chunks.append((whole[len(consumed):], False))
        return [(text, trainable) for text, trainable in chunks if text]

    @staticmethod
    def _apply(tokenizer, messages, add_generation_prompt: bool) -> str:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


TEMPLATES: dict[str, Template] = {}


def register_template(template: Template) -> None:
    TEMPLATES[template.name] = template


def get_template(name: Optional[str], tokenizer) -> Template | TokenizerTemplate:
    if name is None:
        if getattr(tokenizer, "chat_template", None):
            return TokenizerTemplate()
        logger.warning("`template` is not set and the tokenizer has no chat template: using the `empty` template.")
        return TEMPLATES["empty"]
    if name not in TEMPLATES:
        raise DataError(f"Unknown template '{name}'. Built-in templates: {', '.join(TEMPLATES)}.")
    return TEMPLATES[name]


register_template(Template(name="empty", assistant_suffix=""))
register_template(
    Template(name="default", system="System: {content}\n", user="Human: {content}\nAssistant:", separator="\n")
)
register_template(
    Template(
        name="chatml",
        prefix="",
        system="<|im_start|>system\n{content}<|im_end|>\n",
        user="<|im_start|>user\n{content}<|im_end|>\n",
        assistant_prefix="<|im_start|>assistant\n",
        assistant_suffix="<|im_end|>",
        separator="\n",
    )
)
register_template(
    Template(
        name="qwen",
        prefix="",
        system="<|im_start|>system\n{content}<|im_end|>\n",
        user="<|im_start|>user\n{content}<|im_end|>\n",
        assistant_prefix="<|im_start|>assistant\n",
        assistant_suffix="<|im_end|>",
        separator="\n",
        default_system="You are Qwen, created by Alibaba Cloud. You are a helpful assistant.",
    )
)
register_template(
    Template(
        name="llama3",
        system="<|start_header_id|>system<|end_header_id|>\n\n{content}<|eot_id|>",
        user="<|start_header_id|>user<|end_header_id|>\n\n{content}<|eot_id|>",
        assistant_prefix="<|start_header_id|>assistant<|end_header_id|>\n\n",
        assistant_suffix="<|eot_id|>",
    )
)
