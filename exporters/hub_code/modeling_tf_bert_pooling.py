"""TensorFlow: BERT, masked-mean or ``[CLS]`` pooling, dropout and a dense classifier."""

import tensorflow as tf
from transformers import BertConfig
from transformers.modeling_tf_outputs import TFSequenceClassifierOutput
from transformers.modeling_tf_utils import get_initializer, keras, unpack_inputs
from transformers.models.bert.modeling_tf_bert import TFBertMainLayer, TFBertPreTrainedModel


class TFBertForSequenceClassificationWithPooling(TFBertPreTrainedModel):
    """Like ``TFBertForSequenceClassification``, with ``config.sequence_pooling`` instead of
    BERT's tanh pooler; the loss follows ``config.problem_type``."""

    config_class = BertConfig

    def __init__(self, config, *inputs, **kwargs):
        super().__init__(config, *inputs, **kwargs)
        self.num_labels = config.num_labels
        self.bert = TFBertMainLayer(config, add_pooling_layer=False, name="bert")
        rate = (config.classifier_dropout if config.classifier_dropout is not None
                else config.hidden_dropout_prob)
        self.dropout = keras.layers.Dropout(rate=rate)
        self.classifier = keras.layers.Dense(
            config.num_labels, kernel_initializer=get_initializer(config.initializer_range),
            name="classifier")

    @unpack_inputs
    def call(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
             head_mask=None, inputs_embeds=None, output_attentions=None,
             output_hidden_states=None, return_dict=None, labels=None, training=False):
        outputs = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                            token_type_ids=token_type_ids, position_ids=position_ids,
                            head_mask=head_mask, inputs_embeds=inputs_embeds,
                            output_attentions=output_attentions,
                            output_hidden_states=output_hidden_states, return_dict=True,
                            training=training)
        hidden = outputs.last_hidden_state
        if getattr(self.config, "sequence_pooling", "mean") == "cls":
            pooled = hidden[:, 0]
        else:
            if attention_mask is None:
                attention_mask = tf.ones(tf.shape(hidden)[:2])
            mask = tf.expand_dims(tf.cast(attention_mask, hidden.dtype), -1)
            pooled = tf.reduce_sum(hidden * mask, 1) / tf.maximum(tf.reduce_sum(mask, 1), 1.0)
        logits = self.classifier(self.dropout(pooled, training=training))
        loss = None
        if labels is not None:
            if self.config.problem_type == "regression":
                loss = tf.reduce_mean(tf.square(tf.reshape(logits, tf.shape(labels))
                                                - tf.cast(labels, logits.dtype)))
            elif self.config.problem_type == "multi_label_classification":
                loss = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(
                    tf.cast(labels, logits.dtype), logits))
            else:
                loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
                    labels, logits))
        return TFSequenceClassifierOutput(loss=loss, logits=logits,
                                          hidden_states=outputs.hidden_states,
                                          attentions=outputs.attentions)

    def build(self, input_shape=None):
        if self.built:
            return
        self.built = True
        with tf.name_scope(self.bert.name):
            self.bert.build(None)
        with tf.name_scope(self.classifier.name):
            self.classifier.build([None, None, self.config.hidden_size])
