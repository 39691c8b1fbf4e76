package dev.cifaredge.classifier.contract

import java.nio.ByteBuffer
import java.nio.ByteOrder

/** A model the app cannot use as is; the message names the problem and the fix. */
class ModelContractException(message: String) : IllegalArgumentException(message)

/** The tensor types cifar-edge exports for image input and class-score output. */
enum class TensorType(val code: Int, val bytes: Int) {
    FLOAT32(0, 4), UINT8(3, 1), INT8(9, 1);

    val isInteger: Boolean get() = this != FLOAT32

    companion object {
        fun of(code: Int, where: String): TensorType = values().firstOrNull { it.code == code }
            ?: throw ModelContractException("$where has TFLite tensor type $code; export float32, int8 or uint8 I/O")
    }
}

/** real = scale * (q - zeroPoint): TFLite's affine quantization of one tensor. */
data class Quantization(val scale: Float, val zeroPoint: Int)

/**
 * Everything the app must know to feed the model and read its answer, read from the .tflite
 * itself: input size and type, the quantization of integer I/O, and the normalization
 * `(pixel - mean) / std` (pixels 0..255) from the TFLite Support metadata cifar-edge embeds.
 * Nothing about the variant is hard-coded, so float, fp16, dynamic and int8 files all work.
 */
data class ModelSpec(
    val inputSize: Int,
    val inputType: TensorType,
    val inputQuantization: Quantization?,
    val mean: List<Float>,
    val std: List<Float>,
    val outputType: TensorType,
    val outputQuantization: Quantization?,
    val numClasses: Int,
) {
    val inputBytes: Int get() = inputSize * inputSize * 3 * inputType.bytes
    val outputBytes: Int get() = numClasses * outputType.bytes

    companion object {
        private const val TFLITE_METADATA = "TFLITE_METADATA"
        private const val NORMALIZATION_OPTIONS = 1   // ProcessUnitOptions.NormalizationOptions

        /** Reads the spec from the bytes of a .tflite file (e.g. the app's assets/model.tflite). */
        fun read(model: ByteArray, what: String = "model.tflite"): ModelSpec = readingFlatBuffer(what) {
            val buf = ByteBuffer.wrap(model).order(ByteOrder.LITTLE_ENDIAN)
            val root = FlatTable.root(buf, "TFL3", what)
            val graph = root.tables(2).firstOrNull() ?: throw ModelContractException("$what has no subgraph; re-export it")
            val tensors = graph.tables(0)
            val inputs = graph.ints(1)
            val outputs = graph.ints(2)
            if (inputs.size != 1 || outputs.size != 1) {
                throw ModelContractException("$what has ${inputs.size} inputs and ${outputs.size} outputs; " +
                    "the app takes an image classifier with one of each (export it with cifar-edge)")
            }
            val input = tensors[inputs[0]]
            val output = tensors[outputs[0]]
            val inShape = input.ints(0)
            if (inShape.size != 4 || inShape[1] != inShape[2] || inShape[3] != 3) {
                throw ModelContractException("$what input has shape ${inShape.toList()}; expected [1, S, S, 3] RGB")
            }
            val outShape = output.ints(0)
            if (outShape.size != 2) {
                throw ModelContractException("$what output has shape ${outShape.toList()}; expected [1, classes]")
            }
            val inputType = TensorType.of(input.int8(1), "$what input")
            val outputType = TensorType.of(output.int8(1), "$what output")
            val (mean, std) = normalization(root, buf, model, what)
            ModelSpec(
                inputSize = inShape[1], inputType = inputType,
                inputQuantization = if (inputType.isInteger) quantization(input, "$what input") else null,
                mean = mean, std = std, outputType = outputType,
                outputQuantization = if (outputType.isInteger) quantization(output, "$what output") else null,
                numClasses = outShape[1],
            )
        }

        private fun quantization(tensor: FlatTable, what: String): Quantization {
            val q = tensor.table(4)
            val scales = q?.floats(2) ?: FloatArray(0)
            val zeros = q?.longs(3) ?: LongArray(0)
            if (scales.size != 1 || zeros.size != 1) {
                throw ModelContractException("$what is an integer tensor without one scale and zero point; re-export it")
            }
            return Quantization(scales[0], zeros[0].toInt())
        }

        /** mean/std of the input's NormalizationOptions in the TFLITE_METADATA entry (one value or three). */
        private fun normalization(root: FlatTable, buf: ByteBuffer, model: ByteArray, what: String): Pair<List<Float>, List<Float>> {
            val missing = "$what has no normalization metadata; export it with `cifar-edge export --format tflite`, " +
                "which embeds it"
            val entry = root.tables(6).firstOrNull { it.string(0) == TFLITE_METADATA } ?: throw ModelContractException(missing)
            val buffer = root.tables(4)[entry.uint32(1).toInt()]
            val offset = buffer.uint64(1)
            val metadata = if (offset > 1) {   // large models keep buffer data after the flatbuffer
                model.copyOfRange(offset.toInt(), (offset + buffer.uint64(2)).toInt())
            } else {
                val (start, length) = buffer.bytes(0) ?: throw ModelContractException(missing)
                ByteArray(length).also { buf.duplicate().position(start).get(it) }
            }
            val meta = FlatTable.root(ByteBuffer.wrap(metadata).order(ByteOrder.LITTLE_ENDIAN), "M001", "$what metadata")
            val tensor = meta.tables(3).firstOrNull()?.tables(2)?.firstOrNull() ?: throw ModelContractException(missing)
            val unit = tensor.tables(4).firstOrNull { it.uint8(0) == NORMALIZATION_OPTIONS } ?: throw ModelContractException(missing)
            val options = unit.table(1) ?: throw ModelContractException(missing)
            return Pair(perChannel(options.floats(0), "mean", what), perChannel(options.floats(1), "std", what))
        }

        private fun perChannel(values: FloatArray, name: String, what: String): List<Float> = when (values.size) {
            1 -> List(3) { values[0] }
            3 -> values.toList()
            else -> throw ModelContractException("$what normalization $name has ${values.size} values; expected 1 or 3")
        }.also { v ->
            if (name == "std" && v.any { it == 0f }) throw ModelContractException("$what normalization std is 0; re-export it")
        }
    }
}
