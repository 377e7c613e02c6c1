"""Interventions: patching, ablation, steering, remote execution (all through nnsight).

`mechscope.interventions.patching` (`mechscope.patch`), `mechscope.interventions.ablation`
(`mechscope.ablate`), `mechscope.interventions.steering` (`mechscope.generate` with a
`mechscope.steering_vector`) and `mechscope.interventions.metrics` (what they measure). None of
them changes the model: each edit lives inside one trace.

>>> import mechscope
>>> model = mechscope.tiny_model("llama")
>>> before = model.hf(model.to_tokens("The cat")).logits
>>> r = mechscope.ablate(model, "The cat", mechscope.layer(0, "attn"))
>>> r.clean_logits.shape == r.ablated_logits.shape == (model.vocab_size,)
True
>>> bool((model.hf(model.to_tokens("The cat")).logits == before).all())   # model untouched
True
"""
