"""Readers, checked examples and tf.data pipelines."""

from tfsft.data.examples import TextClassificationData, read_text_classification, stratified_split
from tfsft.data.pipeline import EncodedData, encode, make_dataset, predict_logits
from tfsft.data.readers import Table, read_table

__all__ = ["EncodedData", "Table", "TextClassificationData", "encode", "make_dataset",
           "predict_logits", "read_table", "read_text_classification", "stratified_split"]
