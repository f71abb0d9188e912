"""ferrotune: fine-tune pretrained transformers for text classification with the transformers
API, on a Rust core that runs on the libtorch of the installed torch."""

# torch must be imported first: it loads the libtorch that the native module links against.
import torch as _torch

# The torch minor version the native module is built against; pyproject.toml pins the same.
_BUILT_FOR_TORCH = "2.13"


def _check_torch_version(installed: str) -> None:
    release = installed.split("+")[0].split(".")
    if release[:2] != _BUILT_FOR_TORCH.split("."):
        raise ImportError(
            f"ferrotune was built against torch {_BUILT_FOR_TORCH}.x, but torch {installed} "
            f"is installed; its libtorch is not compatible. Install the matching torch with "
            f"`pip install 'torch=={_BUILT_FOR_TORCH}.*'`."
        )


_check_torch_version(_torch.__version__)

from . import _core  # noqa: E402  (after the torch check, on purpose)

from . import evaluate  # noqa: E402
from .configuration import AutoConfig, PretrainedConfig  # noqa: E402
from .modeling import (  # noqa: E402
    AutoModelForSequenceClassification,
    BertForSequenceClassification,
    DistilBertForSequenceClassification,
    PreTrainedModelForSequenceClassification,
    RobertaForSequenceClassification,
    SequenceClassifierOutput,
    XLMRobertaForSequenceClassification,
)
from .trainer import (  # noqa: E402
    EvalPrediction,
    PredictionOutput,
    Trainer,
    TrainOutput,
    set_seed,
)
from .trainer_callback import (  # noqa: E402
    DefaultFlowCallback,
    EarlyStoppingCallback,
    PrinterCallback,
    ProgressCallback,
    TrainerCallback,
    TrainerControl,
    TrainerState,
)
from .pipelines import TextClassificationPipeline, pipeline  # noqa: E402
from .tokenization import AutoTokenizer, BatchEncoding, PreTrainedTokenizerFast  # noqa: E402
from .training_args import TrainingArguments  # noqa: E402

__version__: str = _core.__version__
FerrotuneError = _core.FerrotuneError

__all__ = [
    "AutoConfig",
    "AutoModelForSequenceClassification",
    "AutoTokenizer",
    "BatchEncoding",
    "BertForSequenceClassification",
    "DefaultFlowCallback",
    "DistilBertForSequenceClassification",
    "EarlyStoppingCallback",
    "EvalPrediction",
    "FerrotuneError",
    "PredictionOutput",
    "PrinterCallback",
    "ProgressCallback",
    "PreTrainedModelForSequenceClassification",
    "PreTrainedTokenizerFast",
    "PretrainedConfig",
    "RobertaForSequenceClassification",
    "SequenceClassifierOutput",
    "TextClassificationPipeline",
    "TrainOutput",
    "Trainer",
    "TrainerCallback",
    "TrainerControl",
    "TrainerState",
    "TrainingArguments",
    "XLMRobertaForSequenceClassification",
    "evaluate",
    "pipeline",
    "set_seed",
    "__version__",
]
