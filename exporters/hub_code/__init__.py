"""Model code shipped inside Hugging Face export folders (``tfsft export --format hf``).

``transformers`` has no BERT class for a classifier on the masked mean of the token vectors
(tfsft's default pooling) or on the raw ``[CLS]`` vector. The export writes these two files
beside the weights (``config.json`` holds ``sequence_pooling``: ``mean`` or ``cls``) and names
them in its ``auto_map``, so that
``AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True)`` (PyTorch)
and ``TFAutoModelForSequenceClassification`` (TensorFlow) build the same model. They are copied,
never imported by tfsft.
"""

#: The files copied into an export folder, in this package.
FILES = ("modeling_bert_pooling.py", "modeling_tf_bert_pooling.py")
