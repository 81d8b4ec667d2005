"""goodput-operator: autoscale disaggregated LLM inference for SLO goodput under a GPU budget."""

__version__ = "0.1.0"
