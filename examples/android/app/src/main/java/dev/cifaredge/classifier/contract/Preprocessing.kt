package dev.cifaredge.classifier.contract

import java.nio.ByteBuffer
import java.nio.ByteOrder
import kotlin.math.round

/** The square a photo is cropped to before resizing: centred, side = the shorter edge (as cifar-edge does). */
data class Crop(val x: Int, val y: Int, val side: Int)

fun centerSquare(width: Int, height: Int): Crop {
    require(width > 0 && height > 0) { "image is ${width}x$height; it has no pixels" }
    val side = minOf(width, height)
    return Crop((width - side) / 2, (height - side) / 2, side)
}

/**
 * Packs size x size pixels (ARGB ints, as Android's Bitmap.getPixels gives them; alpha is
 * ignored) into the model's input buffer: `(pixel - mean) / std` in float32, then quantized
 * `round(x / scale + zeroPoint)` (ties to even) and clamped for int8/uint8 inputs.  The
 * arithmetic mirrors cifar-edge's Python runtime operation for operation, so the bytes match.
 */
fun encodeInput(argbPixels: IntArray, spec: ModelSpec): ByteBuffer {
    val n = spec.inputSize * spec.inputSize
    if (argbPixels.size != n) {
        throw ModelContractException("got ${argbPixels.size} pixels; the model takes ${spec.inputSize}x${spec.inputSize} = $n " +
            "(resize the image to ${spec.inputSize}x${spec.inputSize} first)")
    }
    val out = ByteBuffer.allocateDirect(spec.inputBytes).order(ByteOrder.nativeOrder())
    val q = spec.inputQuantization
    val (low, high) = when (spec.inputType) {
        TensorType.INT8 -> -128 to 127
        TensorType.UINT8 -> 0 to 255
        TensorType.FLOAT32 -> 0 to 0
    }
    for (p in argbPixels) {
        for (c in 0 until 3) {
            val channel = (p shr (16 - 8 * c)) and 0xFF           // R, G, B
            val x = (channel.toFloat() - spec.mean[c]) / spec.std[c]
            if (q == null) {
                out.putFloat(x)
            } else {
                val level = round(x / q.scale + q.zeroPoint.toFloat()).toInt().coerceIn(low, high)   // ties to even, as numpy
                out.put(level.toByte())
            }
        }
    }
    out.rewind()
    return out
}
