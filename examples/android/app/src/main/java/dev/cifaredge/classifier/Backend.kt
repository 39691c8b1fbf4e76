package dev.cifaredge.classifier

import java.io.Closeable
import java.nio.ByteBuffer

/**
 * Where the model runs.  The default build (flavor `compiled`) runs LiteRT's CompiledModel API
 * on CPU, GPU, and NPU where the device offers one; NNAPI exists only in the `legacyNnapi` build.
 */
enum class Backend {
    CPU,
    GPU,
    NPU,

    @Deprecated("Android 15 deprecated NNAPI, and LiteRT 2 has no NNAPI delegate; use GPU or NPU (the `compiled` build)")
    NNAPI,
}

/** One model opened on one backend: the contract's input buffer in, the raw output buffer out. */
interface ModelRunner : Closeable {
    val backend: Backend
    fun run(input: ByteBuffer): ByteBuffer
}
