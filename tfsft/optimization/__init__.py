"""AdamW as one fused kernel per weight, and learning-rate warmup + decay schedules.

Below the models layer, so a saved model's compile config (which names them) loads in a
process that imported no more than the model's class.
"""
