"""Condition types and reasons, one place for the operator and local mode."""

# TrainingJob
SUCCEEDED = "Succeeded"
FAILED = "Failed"
GATE_PASSED = "GatePassed"
# ModelEndpoint
READY = "Ready"
MODEL_AVAILABLE = "ModelAvailable"
ROLLOUT_PROGRESSING = "RolloutProgressing"
# LanguageModel
HAS_PASSING_VERSION = "HasPassingVersion"
STORAGE_READY = "StorageReady"

# Reasons
REASON_NO_PASSING_VERSION = "NoPassingVersion"
REASON_VERSION_NOT_FOUND = "VersionNotFound"
REASON_MODEL_NOT_FOUND = "ModelNotFound"
REASON_GATE_FAILED = "GateFailed"
REASON_ALL_GATES_PASSED = "AllGatesPassed"
REASON_TRAINING_FAILED = "TrainingFailed"
REASON_STEP_FAILED = "StepFailed"
REASON_COMPLETED = "Completed"
REASON_SERVING = "Serving"
REASON_STARTING = "Starting"
REASON_STOPPED = "Stopped"
REASON_CLAIM_FOUND = "ClaimFound"
REASON_CLAIM_MISSING = "ClaimMissing"
REASON_UNSUPPORTED_STORAGE = "UnsupportedStorage"
REASON_INVALID_SPEC = "InvalidSpec"
REASON_INVALID_CONFIGURATION = "InvalidConfiguration"
REASON_STORAGE_NOT_READY = "StorageNotReady"
REASON_SECRET_MISSING = "SecretMissing"
REASON_PREPARING = "Preparing"
REASON_TRAINING = "Training"
REASON_EVALUATING = "Evaluating"
REASON_PENDING = "Pending"
REASON_RESTARTING = "Restarting"
REASON_INTERRUPTED = "Interrupted"
REASON_RECONCILE_ERROR = "ReconcileError"

# Reasons that mean something is wrong: their conditions become Warning events.
WARNING_REASONS = frozenset(
    {
        REASON_MODEL_NOT_FOUND,
        REASON_VERSION_NOT_FOUND,
        REASON_GATE_FAILED,
        REASON_STEP_FAILED,
        REASON_TRAINING_FAILED,
        REASON_CLAIM_MISSING,
        REASON_UNSUPPORTED_STORAGE,
        REASON_INVALID_SPEC,
        REASON_INVALID_CONFIGURATION,
        REASON_STORAGE_NOT_READY,
        REASON_SECRET_MISSING,
        REASON_RESTARTING,
        REASON_RECONCILE_ERROR,
    }
)
