"""Recipes: the whole training regime as data, validated with errors that say where.

A recipe answers the note's questions — how is the model initialised, what is frozen,
which learning rate for which parameters, in which stages, for how many epochs, with
how much augmentation — so two regimes differ only in their YAML.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tunewise.errors import RecipeError
from tunewise.recipes.files import BUILTIN_DIR, builtin_recipes, read_recipe

__all__ = ["BUILTIN_DIR", "Recipe", "RecipeError", "builtin_recipes", "load_recipe", "parse_recipe"]


class _Strict(BaseModel):
    # Unknown keys are errors: a typo like ``learning_rate`` must not be silently ignored.
    model_config = ConfigDict(extra="forbid")


def _added_field(default):
    """A field added after recipes were first saved: left out of dumps while it holds its
    default, so the run fingerprints, searches and comparisons saved before it still match
    the same recipe today (they compare dumps)."""
    return Field(default, exclude_if=lambda value: value == default)


TEXT_ARCHITECTURES = ("auto", "textcnn")
IMAGE_ARCHITECTURES = ("customcnn", "resnet18", "mobilenet_v2", "efficientnet_lite0")


class HeadSpec(_Strict):
    """The task head put on top of the encoder.

    ``linear`` keeps the architecture's own classifier (loadable by plain transformers);
    ``mlp`` is the note's ``Linear -> ReLU -> Dropout -> Linear``.
    """

    type: Literal["linear", "mlp"] = "linear"
    hidden_size: Annotated[int, Field(gt=0)] = 256
    dropout: Annotated[float, Field(ge=0, lt=1)] = 0.5


class TextCNNSpec(_Strict):
    """Kim (2014) TextCNN hyper-parameters, used when ``architecture: textcnn``."""

    embedding_dim: Annotated[int, Field(gt=0)] = 128
    num_filters: Annotated[int, Field(gt=0)] = 128
    kernel_sizes: list[Annotated[int, Field(gt=0)]] = [2, 3, 4, 5]
    dropout: Annotated[float, Field(ge=0, lt=1)] = 0.5
    vocab_size: Annotated[int, Field(gt=10)] = 8000


class LoraSpec(_Strict):
    """LoRA (Hu et al. 2021, the ``peft`` library): the pretrained weights stay frozen and each
    ``target_modules`` linear layer learns a low-rank update ``B @ A`` (rank ``r``, scaled by
    ``alpha / r``) beside the trainable head. The saved model directory holds the adapters
    (``adapter/``, loadable with ``peft.PeftModel.from_pretrained``) and, for prediction, export
    and serving, the plain model with them merged in.

    ``target_modules`` are module-name suffixes, as peft takes them (BERT's attention:
    ``query``, ``key``, ``value``; ``attention.output.dense`` and ``output.dense`` its
    projections). ``train_new_tokens``: the typed tokens tunewise adds to a vocabulary
    ([URL], [PHONE], …) start random; train their embedding rows (peft's trainable tokens)
    rather than leave them frozen at random values.
    """

    r: Annotated[int, Field(ge=1, le=1024)] = 8
    alpha: Annotated[float, Field(gt=0)] = 16.0
    dropout: Annotated[float, Field(ge=0, lt=1)] = 0.1
    target_modules: Annotated[list[str], Field(min_length=1)] = ["query", "value"]
    train_new_tokens: bool = True


class ModelSpec(_Strict):
    """The network. Text: ``auto`` (the pretrained checkpoint's own architecture) or
    ``textcnn``. Images (``tunewise.models.vision``): ``customcnn`` (the note's, from
    scratch), ``resnet18``, ``mobilenet_v2``, ``efficientnet_lite0``."""

    init: Literal["pretrained", "random"] = "pretrained"
    architecture: Literal[
        "auto", "textcnn", "customcnn", "resnet18", "mobilenet_v2", "efficientnet_lite0"
    ] = "auto"
    head: HeadSpec = HeadSpec()
    textcnn: TextCNNSpec = TextCNNSpec()
    max_length: Annotated[int, Field(ge=8, le=8192)] = 256
    # images: the side of the square the network sees (None: the architecture's own, 224;
    # 32 for customcnn)
    image_size: Annotated[int, Field(ge=16, le=1024)] | None = _added_field(None)
    # LoRA adapters instead of training the pretrained weights (text, init: pretrained)
    lora: LoraSpec | None = _added_field(None)

    @model_validator(mode="after")
    def _customcnn_halves_three_times(self) -> ModelSpec:
        if self.architecture == "customcnn" and self.image_size is not None and self.image_size % 8:
            raise ValueError(
                f"customcnn pools 2x2 three times: image_size must be a multiple of 8, got {self.image_size}"
            )
        return self

    @model_validator(mode="after")
    def _lora_adapts_pretrained_encoders(self) -> ModelSpec:
        if self.lora is not None and (self.init != "pretrained" or self.architecture != "auto"):
            raise ValueError(
                "lora adapts a pretrained encoder: it needs init: pretrained and architecture: auto "
                f"(got init: {self.init}, architecture: {self.architecture})"
            )
        return self

    @model_validator(mode="after")
    def _scratch_architectures_are_random(self) -> ModelSpec:
        if self.architecture in ("textcnn", "customcnn") and self.init == "pretrained":
            raise ValueError(
                f"architecture {self.architecture!r} has no pretrained weights; use init: random"
            )
        return self


class OptimizerSpec(_Strict):
    name: Literal["adam", "adamw", "sgd"] = "adamw"
    lr: Annotated[float, Field(gt=0, le=10)] = 1e-3
    betas: tuple[Annotated[float, Field(ge=0, lt=1)], Annotated[float, Field(ge=0, lt=1)]] = (
        0.9,
        0.999,
    )
    eps: Annotated[float, Field(gt=0)] = 1e-8
    weight_decay: Annotated[float, Field(ge=0)] = 0.0
    amsgrad: bool = False
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.9  # SGD only


class ParamGroupSpec(_Strict):
    """Parameters whose module name matches ``modules`` (glob patterns) get their own LR."""

    modules: list[str]
    lr: Annotated[float, Field(gt=0)] | None = None
    lr_scale: Annotated[float, Field(gt=0)] | None = None
    weight_decay: Annotated[float, Field(ge=0)] | None = None

    @model_validator(mode="after")
    def _one_lr(self) -> ParamGroupSpec:
        if self.lr is not None and self.lr_scale is not None:
            raise ValueError("give either lr or lr_scale, not both")
        return self


class PlateauSpec(_Strict):
    name: Literal["plateau"]
    mode: Literal["min", "max"] = "max"
    factor: Annotated[float, Field(gt=0, lt=1)] = 0.5
    patience: Annotated[int, Field(ge=0)] = 2
    min_lr: Annotated[float, Field(ge=0)] = 1e-7


class LinearWarmupSpec(_Strict):
    name: Literal["linear_warmup"]
    warmup_ratio: Annotated[float, Field(ge=0, lt=1)] = 0.1


class OneCycleSpec(_Strict):
    name: Literal["onecycle"]
    pct_start: Annotated[float, Field(gt=0, lt=1)] = 0.3


class NoSchedule(_Strict):
    name: Literal["none"]


SchedulerSpec = Annotated[
    PlateauSpec | LinearWarmupSpec | OneCycleSpec | NoSchedule, Field(discriminator="name")
]


class FreezeSpec(_Strict):
    """What is frozen before the first stage.

    ``modules`` are glob patterns over module names (``bert.embeddings``,
    ``bert.encoder.layer.[0-5]``), or ``backbone``/``head``. ``first_n_groups`` freezes the
    first N layer groups counted from the input, as the note's ``for i, child in
    enumerate(model.children()): if i < N`` does.
    """

    modules: list[str] = []
    first_n_groups: Annotated[int, Field(ge=0)] | None = None
    # the note's loop exactly: ``for i, child in enumerate(model.children()): if i < N: freeze``
    # (children without parameters, such as ReLU and pooling, count too)
    first_n_children: Annotated[int, Field(ge=1)] | None = _added_field(None)
    train_batchnorm: bool = False


class StageSpec(_Strict):
    """One stage: which modules train, at which learning rate, for how many epochs.

    ``trainable`` replaces the trainable set (``all``, ``head``, or patterns);
    ``unfreeze``/``freeze`` adjust the set left by the previous stage; ``freeze_to: n``
    is fastai's ``freeze_to`` over layer groups (negative counts from the output).
    """

    name: str
    epochs: Annotated[int, Field(ge=1)]
    trainable: Literal["all", "head"] | list[str] | None = None
    unfreeze: list[str] = []
    freeze: list[str] = []
    freeze_to: int | None = None
    lr: Annotated[float, Field(gt=0)] | None = None
    lr_scale: Annotated[float, Field(gt=0)] = 1.0
    # this stage's own parameter groups, replacing the recipe's (the note's second stage
    # trains layer4 at 1e-5 where the first gave it 1e-3)
    param_groups: list[ParamGroupSpec] | None = _added_field(None)


class EarlyStoppingSpec(_Strict):
    """When a stage may end early: after ``patience`` epochs without a better dev score.

    The patience a stage gets is the larger of ``patience`` and ``patience_ratio`` of its
    epochs, so a 300-epoch stage on 50 labels is not held to a 30-epoch stage's patience;
    the epochs a warm-up schedule spends raising the rate do not count; and no stage ends
    before the run's best dev score beats the majority-class baseline (a model still
    predicting one class has not started learning, whatever its patience says).
    """

    patience: Annotated[int, Field(ge=1)] = 3
    patience_ratio: Annotated[float, Field(ge=0, le=1)] = 0.2
    min_delta: Annotated[float, Field(ge=0)] = 0.0


class LossSpec(_Strict):
    type: Literal["cross_entropy", "focal"] = "cross_entropy"
    gamma: Annotated[float, Field(ge=0)] = 2.0
    class_weight: Literal["balanced"] | None = None
    label_smoothing: Annotated[float, Field(ge=0, lt=1)] = 0.0


class DomainAdaptationSpec(_Strict):
    """ULMFiT's middle step as a stage before fine-tuning: masked-language-model training of
    the pretrained encoder on the run's own training texts, labels unused (domain-adaptive
    pretraining, ``tunewise pretrain --from``), then fine-tuning from the adapted encoder.

    The texts are the whole training split's — the unlabelled rest and the labelled fraction
    alike, as ULMFiT fine-tunes its language model on all the target text — never dev or test.
    """

    epochs: Annotated[int, Field(ge=1)] = 1
    lr: Annotated[float, Field(gt=0)] = 5e-4
    mask_probability: Annotated[float, Field(gt=0, lt=1)] = 0.4
    batch_size: Annotated[int, Field(ge=1)] = 8
    max_length: Annotated[int, Field(ge=8, le=8192)] = 128


class Recipe(_Strict):
    """A complete, validated training recipe.

    Example:
        >>> r = load_recipe("finetune")
        >>> r.model.init, r.optimizer.name, [s.name for s in r.stages]
        ('pretrained', 'adamw', ['head', 'full'])
    """

    name: str
    description: str = ""
    # the modality: text or images (tunewise.tracks)
    track: Literal["text", "image"] = _added_field("text")
    model: ModelSpec = ModelSpec()
    freeze: FreezeSpec = FreezeSpec()
    optimizer: OptimizerSpec = OptimizerSpec()
    param_groups: list[ParamGroupSpec] = []
    layerwise_lr_decay: Annotated[float, Field(gt=0, le=1)] | None = None
    scheduler: SchedulerSpec = NoSchedule(name="none")
    stages: list[StageSpec] = []
    epochs: Annotated[int, Field(ge=1)] = 10
    batch_size: Annotated[int, Field(ge=1, le=4096)] = 32
    eval_batch_size: Annotated[int, Field(ge=1, le=4096)] = 128
    # batches whose gradients add up before one optimizer step: an effective batch of
    # batch_size x this, in the memory of one batch_size. With N processes batch_size is
    # already the global batch (each process takes 1/N of it; tunewise.training.distributed)
    gradient_accumulation_steps: Annotated[int, Field(ge=1, le=1024)] = _added_field(1)
    # autocast for the forward pass: bf16 (CPUs and recent GPUs) or fp16 (GPUs, with a loss
    # scaler); "no" trains in float32
    mixed_precision: Literal["no", "bf16", "fp16"] = _added_field("no")
    augmentation: Literal["none", "mild", "strong"] = "none"
    early_stopping: EarlyStoppingSpec | None = None
    loss: LossSpec = LossSpec()
    max_grad_norm: Annotated[float, Field(gt=0)] | None = 1.0
    metric: Literal["macro_f1", "accuracy"] = "macro_f1"
    domain_adaptation: DomainAdaptationSpec | None = None

    @model_validator(mode="after")
    def _architecture_fits_track(self) -> Recipe:
        allowed = TEXT_ARCHITECTURES if self.track == "text" else IMAGE_ARCHITECTURES
        if self.model.architecture not in allowed:
            raise ValueError(
                f"track {self.track!r} has no architecture {self.model.architecture!r}; choose one of "
                f"{', '.join(allowed)}" + ("" if self.track == "image" else " (or set track: image)")
            )
        if self.track == "image" and self.domain_adaptation is not None:
            raise ValueError("domain_adaptation (masked-LM pretraining) is for the text track")
        return self

    @model_validator(mode="after")
    def _adapt_pretrained_only(self) -> Recipe:
        if self.domain_adaptation is not None and self.model.init != "pretrained":
            raise ValueError(
                "domain_adaptation continues a pretrained encoder; it needs model.init: pretrained"
            )
        return self

    @model_validator(mode="after")
    def _lora_trains_adapters_and_head_only(self) -> Recipe:
        # the saved adapters (peft's format) hold the LoRA weights and the head: a recipe that
        # trained any other pretrained weight would save adapters that rebuild another model
        if self.model.lora is None:
            return self
        allowed = {"head", "adapters"}
        if not {"backbone", "all"} & set(self.freeze.modules):
            raise ValueError(
                "a model.lora recipe keeps the pretrained weights frozen: set freeze: {modules: [backbone]}"
            )
        trains_adapters = False
        for s in self.resolved_stages():
            trainable = [s.trainable] if isinstance(s.trainable, str) else s.trainable
            if trainable is None or s.freeze_to is not None or not set(trainable + s.unfreeze) <= allowed:
                raise ValueError(
                    f"stage {s.name!r}: with model.lora a stage trains the adapters and the head only "
                    "(trainable: [head, adapters]), so that the saved adapters hold everything that "
                    "trained; for full fine-tuning leave model.lora out"
                )
            trains_adapters = trains_adapters or "adapters" in trainable + s.unfreeze
        if not trains_adapters:
            raise ValueError(
                "model.lora is set but no stage trains the adapters (trainable: [head, adapters])"
            )
        return self

    @model_validator(mode="after")
    def _stages_cover_epochs(self) -> Recipe:
        if self.stages:
            total = sum(s.epochs for s in self.stages)
            if "epochs" not in self.model_fields_set:
                self.epochs = total  # derived, so a dumped recipe states it consistently
            elif total != self.epochs:
                raise ValueError(
                    f"epochs is {self.epochs} but the stages add up to {total}; "
                    "drop 'epochs' or make them agree"
                )
        return self

    def resolved_stages(self) -> list[StageSpec]:
        """The stages to run; a recipe without stages is one stage training everything."""
        if self.stages:
            return list(self.stages)
        return [StageSpec(name="train", epochs=self.epochs)]

    def total_epochs(self) -> int:
        return sum(s.epochs for s in self.resolved_stages())

    def with_epochs(self, epochs: int) -> Recipe:
        """The recipe scaled to ``epochs`` in total, keeping each stage's share (>=1 each).

        Example:
            >>> load_recipe("finetune").with_epochs(3).total_epochs()
            3
        """
        stages = self.resolved_stages()
        if len(stages) > epochs:
            raise RecipeError(f"recipe {self.name!r} has {len(stages)} stages; --epochs must be >= that")
        total = sum(s.epochs for s in stages)
        new = [max(1, round(s.epochs * epochs / total)) for s in stages]
        while sum(new) > epochs:  # rounding overshoot: take from the longest stage
            new[new.index(max(new))] -= 1
        new[-1] += epochs - sum(new)
        if not self.stages:
            return self.model_copy(update={"epochs": epochs})
        staged = [s.model_copy(update={"epochs": n}) for s, n in zip(stages, new, strict=True)]
        return self.model_copy(update={"stages": staged, "epochs": epochs})

    def with_model(self, **changes) -> Recipe:
        """The recipe with ``model`` fields changed, validated again (errors name the field).

        Example:
            >>> load_recipe("image-scratch").with_model(image_size=64).model.image_size
            64
        """
        raw = self.model_dump(mode="json")
        raw["model"] = {**raw["model"], **changes}
        return parse_recipe(raw, source=f"recipe {self.name!r}")

    def to_yaml(self) -> str:
        """The recipe as YAML that :func:`load_recipe` reads back to an equal recipe."""
        import yaml

        return yaml.safe_dump(self.model_dump(mode="json"), allow_unicode=True, sort_keys=False)


def load_recipe(name_or_path: str | Path) -> Recipe:
    """Load a built-in recipe by name, or a YAML file by path, and validate it.

    Example:
        >>> load_recipe("scratch").model.architecture
        'textcnn'
    """
    raw, path = read_recipe(name_or_path)
    return parse_recipe(raw, source=str(path))


def parse_recipe(raw: dict, source: str = "<recipe>") -> Recipe:
    """Validate a recipe given as a dict; errors name each bad field by its path."""
    try:
        return Recipe.model_validate(raw)
    except ValidationError as err:
        lines = []
        for e in err.errors():
            where = ".".join(str(p) for p in e["loc"]) or "(top level)"
            got = f" (got {e['input']!r})" if "input" in e and not isinstance(e["input"], dict) else ""
            lines.append(f"  {where}: {e['msg']}{got}")
        raise RecipeError(f"{source}: invalid recipe:\n" + "\n".join(lines)) from None
