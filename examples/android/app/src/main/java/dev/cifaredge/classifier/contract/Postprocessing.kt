package dev.cifaredge.classifier.contract

import java.nio.ByteBuffer
import java.nio.ByteOrder
import kotlin.math.exp

/** One ranked class. */
data class Prediction(val index: Int, val label: String, val score: Float)

/** The model's raw output buffer -> float scores (logits), dequantized for int8/uint8 outputs. */
fun decodeOutput(raw: ByteBuffer, spec: ModelSpec): FloatArray {
    val b = raw.duplicate().order(ByteOrder.nativeOrder())
    b.rewind()
    if (b.remaining() < spec.outputBytes) {
        throw ModelContractException("output buffer holds ${b.remaining()} bytes; the model writes ${spec.outputBytes}")
    }
    val q = spec.outputQuantization
    return FloatArray(spec.numClasses) {
        when (spec.outputType) {
            TensorType.FLOAT32 -> b.getFloat()
            TensorType.INT8 -> (b.get().toFloat() - q!!.zeroPoint) * q.scale
            TensorType.UINT8 -> ((b.get().toInt() and 0xFF).toFloat() - q!!.zeroPoint) * q.scale
        }
    }
}

/** Logits -> probabilities (cifar-edge models output logits, as their metadata says). */
fun softmax(logits: FloatArray): FloatArray {
    val top = logits.maxOrNull() ?: return logits
    val e = DoubleArray(logits.size) { exp((logits[it] - top).toDouble()) }
    val sum = e.sum()
    return FloatArray(logits.size) { (e[it] / sum).toFloat() }
}

/** The k best classes, highest score first; equal scores keep class order (quantized outputs tie often). */
fun topK(scores: FloatArray, labels: List<String>, k: Int = 5): List<Prediction> {
    if (labels.size != scores.size) {
        throw ModelContractException("labels.txt has ${labels.size} labels but the model scores ${scores.size} classes; " +
            "copy the labels.txt exported with this model")
    }
    return scores.indices.sortedWith(compareByDescending<Int> { scores[it] }.thenBy { it })
        .take(k).map { Prediction(it, labels[it], scores[it]) }
}

/** labels.txt (one class name per line, as cifar-edge writes it) for a model with [numClasses] outputs. */
fun parseLabels(text: String, numClasses: Int): List<String> {
    val labels = text.lines().map { it.trim() }.dropLastWhile { it.isEmpty() }
    if (labels.size != numClasses || labels.any { it.isEmpty() }) {
        throw ModelContractException("labels.txt has ${labels.size} lines (blank ones included) but the model has " +
            "$numClasses classes; copy the labels.txt exported with this model")
    }
    return labels
}
