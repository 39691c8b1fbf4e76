package dev.cifaredge.classifier.contract

import java.nio.ByteBuffer
import java.nio.ByteOrder

/*
 * The contract's byte buffers as LiteRT's CompiledModel TensorBuffers take and give them: whole
 * arrays, float32 tensors as a FloatArray (writeFloat/readFloat), int8 and uint8 tensors as
 * their raw bytes (writeInt8/readInt8 copy bytes whatever their sign).  Which call a variant
 * needs is decided here, in plain Kotlin, so the JVM tests check it for every exported variant.
 */

/** Hands [input] (what [encodeInput] made) to the writer its input type needs. */
fun writeInput(input: ByteBuffer, spec: ModelSpec, writeFloat: (FloatArray) -> Unit, writeBytes: (ByteArray) -> Unit) {
    val b = input.duplicate().order(input.order())
    b.rewind()
    if (b.remaining() != spec.inputBytes) {
        throw ModelContractException("input buffer holds ${b.remaining()} bytes; the model takes ${spec.inputBytes}")
    }
    when (spec.inputType) {
        TensorType.FLOAT32 -> writeFloat(FloatArray(spec.inputBytes / 4).also { b.asFloatBuffer().get(it) })
        TensorType.INT8, TensorType.UINT8 -> writeBytes(ByteArray(spec.inputBytes).also { b.get(it) })
    }
}

/** The model's output, read with the reader its output type needs, as the buffer [decodeOutput] takes. */
fun readOutput(spec: ModelSpec, readFloat: () -> FloatArray, readBytes: () -> ByteArray): ByteBuffer {
    val out = ByteBuffer.allocate(spec.outputBytes).order(ByteOrder.nativeOrder())
    val n = when (spec.outputType) {
        TensorType.FLOAT32 -> readFloat().also { out.asFloatBuffer().put(it, 0, minOf(it.size, spec.numClasses)) }.size
        TensorType.INT8, TensorType.UINT8 -> readBytes().also { out.put(it, 0, minOf(it.size, spec.outputBytes)) }.size
    }
    if (n != spec.numClasses) {
        throw ModelContractException("the output tensor holds $n values; the model's metadata says ${spec.numClasses} classes")
    }
    out.rewind()
    return out
}
