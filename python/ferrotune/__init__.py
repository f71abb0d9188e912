"""ferrotune: fine-tune pretrained transformers for text classification with the transformers
API, on a Rust core that runs on the libtorch of the installed torch."""

from . import _openmp

# Before torch loads its OpenMP runtime: how long its threads spin (see _openmp.py).
_openmp.share_cores()

# torch must be imported before the native module: it loads the libtorch that the module
# links against.
import torch as _torch  # noqa: E402

from . import _native  # noqa: E402

# The native module built for this torch (one per torch minor), as `ferrotune._core`.
_core = _native.load(_torch.__version__)

from . import evaluate  # noqa: E402
from .configuration import AutoConfig, PretrainedConfig  # noqa: E402
from .modeling import (  # noqa: E402
    AutoModelForSequenceClassification,
    BertForSequenceClassification,
    DebertaV2ForSequenceClassification,
    DistilBertForSequenceClassification,
    ElectraForSequenceClassification,
    ModernBertForSequenceClassification,
    PreTrainedModelForSequenceClassification,
    RobertaForSequenceClassification,
    SequenceClassifierOutput,
    XLMRobertaForSequenceClassification,
)
from .pipelines import (  # noqa: E402
    FillMaskPipeline,
    TextClassificationPipeline,
    TokenClassificationPipeline,
    pipeline,
)
from .tokenization import AutoTokenizer, BatchEncoding, PreTrainedTokenizerFast  # noqa: E402
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
from .training_args import TrainingArguments  # noqa: E402

__version__: str = _core.__version__
FerrotuneError = _core.FerrotuneError

__all__ = [
    "AutoConfig",
    "AutoModelForSequenceClassification",
    "AutoTokenizer",
    "BatchEncoding",
    "BertForSequenceClassification",
    "DebertaV2ForSequenceClassification",
    "DefaultFlowCallback",
    "DistilBertForSequenceClassification",
    "ElectraForSequenceClassification",
    "ModernBertForSequenceClassification",
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
    "TokenClassificationPipeline",
    "FillMaskPipeline",
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
