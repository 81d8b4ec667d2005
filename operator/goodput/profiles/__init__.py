"""Performance profiles: per-replica speed priors calibrated to published figures.

The functional form is DistServe's (prefill_s = a + b*sum(L) + c*sum(L^2);
decode step_s = a + b*batch + c*sum(context tokens)), fitted to the measurements in
shared/data/perf. The planner and the twin read the same profile; the twin simulates
it, the planner predicts from it.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class PerformanceProfile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(description="e.g. llama-3.1-70b-h100-tp4")
    model: str
    gpu: str
    gpus_per_replica: int = Field(ge=1)
    # Prefill of one batch, seconds: a + b * sum(L) + c * sum(L^2)
    prefill_base_s: float = Field(ge=0)
    prefill_per_token_s: float = Field(ge=0)
    prefill_per_token2_s: float = Field(ge=0)
    # One decode step, seconds: a + b * batch + c * sum(context tokens)
    decode_base_s: float = Field(ge=0)
    decode_per_seq_s: float = Field(ge=0)
    decode_per_ctx_token_s: float = Field(ge=0)
    kv_bytes_per_token: int = Field(ge=1)
    kv_capacity_tokens: int = Field(ge=1, description="KV tokens one replica holds in HBM")
    max_batch: int = Field(ge=1)
    max_prefill_tokens: int = Field(ge=1, description="token budget of one prefill batch")
    weight_bytes: float = Field(gt=0)
    hbm_bandwidth_bytes_per_s: float = Field(gt=0, description="per replica (all its GPUs)")
    sources: list[str] = Field(default_factory=list)

    def prefill_seconds(self, total_tokens: float, sum_sq_tokens: float) -> float:
        return (
            self.prefill_base_s
            + self.prefill_per_token_s * total_tokens
            + self.prefill_per_token2_s * sum_sq_tokens
        )

    def decode_step_seconds(self, batch: float, context_tokens: float) -> float:
        return (
            self.decode_base_s
            + self.decode_per_seq_s * batch
            + self.decode_per_ctx_token_s * context_tokens
        )
