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
from .data_collator import (  # noqa: E402
    DataCollatorForLanguageModeling,
    DataCollatorForTokenClassification,
    DataCollatorWithPadding,
)
from .modeling import (  # noqa: E402
    AutoModelForMaskedLM,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    BertForMaskedLM,
    BertForSequenceClassification,
    BertForTokenClassification,
    DebertaV2ForMaskedLM,
    DebertaV2ForSequenceClassification,
    DebertaV2ForTokenClassification,
    DistilBertForMaskedLM,
    DistilBertForSequenceClassification,
    DistilBertForTokenClassification,
    ElectraForMaskedLM,
    ElectraForSequenceClassification,
    ElectraForTokenClassification,
    MaskedLMOutput,
    ModernBertForMaskedLM,
    ModernBertForSequenceClassification,
    ModernBertForTokenClassification,
    PreTrainedModel,
    PreTrainedModelForMaskedLM,
    PreTrainedModelForSequenceClassification,
    PreTrainedModelForTokenClassification,
    RobertaForMaskedLM,
    RobertaForSequenceClassification,
    RobertaForTokenClassification,
    SequenceClassifierOutput,
    TokenClassifierOutput,
    XLMRobertaForMaskedLM,
    XLMRobertaForSequenceClassification,
    XLMRobertaForTokenClassification,
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
    "AutoModelForMaskedLM",
    "AutoModelForSequenceClassification",
    "AutoModelForTokenClassification",
    "AutoTokenizer",
    "BatchEncoding",
    "BertForMaskedLM",
    "BertForSequenceClassification",
    "BertForTokenClassification",
    "DataCollatorForLanguageModeling",
    "DataCollatorForTokenClassification",
    "DataCollatorWithPadding",
    "DebertaV2ForMaskedLM",
    "DebertaV2ForSequenceClassification",
    "DebertaV2ForTokenClassification",
    "DefaultFlowCallback",
    "DistilBertForMaskedLM",
    "DistilBertForSequenceClassification",
    "DistilBertForTokenClassification",
    "EarlyStoppingCallback",
    "ElectraForMaskedLM",
    "ElectraForSequenceClassification",
    "ElectraForTokenClassification",
    "EvalPrediction",
    "FerrotuneError",
    "MaskedLMOutput",
    "ModernBertForMaskedLM",
    "ModernBertForSequenceClassification",
    "ModernBertForTokenClassification",
    "PreTrainedModel",
    "PreTrainedModelForMaskedLM",
    "PreTrainedModelForSequenceClassification",
    "PreTrainedModelForTokenClassification",
    "PreTrainedTokenizerFast",
    "PredictionOutput",
    "PretrainedConfig",
    "PrinterCallback",
    "ProgressCallback",
    "RobertaForMaskedLM",
    "RobertaForSequenceClassification",
    "RobertaForTokenClassification",
    "SequenceClassifierOutput",
    "TextClassificationPipeline",
    "TokenClassificationPipeline",
    "FillMaskPipeline",
    "TokenClassifierOutput",
    "TrainOutput",
    "Trainer",
    "TrainerCallback",
    "TrainerControl",
    "TrainerState",
    "TrainingArguments",
    "XLMRobertaForMaskedLM",
    "XLMRobertaForSequenceClassification",
    "XLMRobertaForTokenClassification",
    "evaluate",
    "pipeline",
    "set_seed",
    "__version__",
]
