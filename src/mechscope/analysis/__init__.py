"""Analyses: plain result objects (numpy arrays + labels); `.show()` returns a widget.

`mechscope.analysis.activations` (one number per layer and token), `mechscope.analysis.logit_lens`
(top next tokens read off every layer) and `mechscope.analysis.selectivity` (which MLP neurons
prefer a class of text). Each result is a frozen dataclass with ``.to_pandas()``:

>>> import mechscope
>>> model = mechscope.tiny_model("llama")
>>> lens = mechscope.logit_lens(model, "The cat sat", top_k=2)
>>> lens.top_ids.shape == (model.n_layers, len(lens.tokens), 2)    # (layers, positions, k)
True
>>> len(lens.to_pandas()) == lens.top_ids.size                      # one row per cell and rank
True
"""
