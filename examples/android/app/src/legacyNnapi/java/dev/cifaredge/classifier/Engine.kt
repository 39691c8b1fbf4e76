@file:Suppress("DEPRECATION")

package dev.cifaredge.classifier

import android.content.Context
import dev.cifaredge.classifier.contract.ModelSpec
import java.nio.ByteBuffer
import java.nio.ByteOrder
import java.nio.MappedByteBuffer
import java.nio.channels.FileChannel
import org.tensorflow.lite.Interpreter
import org.tensorflow.lite.nnapi.NnApiDelegate

/**
 * Legacy build (flavor `legacyNnapi`): LiteRT 1.x's Interpreter with the NNAPI delegate, for
 * devices before Android 15 whose vendor drivers only NNAPI reaches.  Android 15 deprecated
 * NNAPI and LiteRT 2 dropped the delegate, so the default build does not have it.
 */
@Deprecated("NNAPI is deprecated since Android 15; use the default `compiled` build (GPU or NPU)")
internal object Engine {

    fun offered(context: Context): List<Backend> = listOf(Backend.CPU, Backend.NNAPI)

    /** Opens assets/[asset] on the CPU or through NNAPI; throws when the device refuses it. */
    fun open(context: Context, asset: String, spec: ModelSpec, backend: Backend, threads: Int): ModelRunner {
        require(backend == Backend.CPU || backend == Backend.NNAPI) { "$backend is only in the compiled build" }
        val delegate = if (backend == Backend.NNAPI) NnApiDelegate() else null
        try {
            val options = Interpreter.Options().setNumThreads(threads)
            delegate?.let { options.addDelegate(it) }
            return Interpreted(Interpreter(mapAsset(context, asset), options), delegate, spec, backend)
        } catch (e: Exception) {
            delegate?.close()
            throw e
        }
    }

    private class Interpreted(
        private val interpreter: Interpreter,
        private val delegate: NnApiDelegate?,
        spec: ModelSpec,
        override val backend: Backend,
    ) : ModelRunner {
        private val output = ByteBuffer.allocateDirect(spec.outputBytes).order(ByteOrder.nativeOrder())

        override fun run(input: ByteBuffer): ByteBuffer {
            output.rewind()
            interpreter.run(input, output)
            return output
        }

        override fun close() {
            interpreter.close()
            delegate?.close()
        }
    }

    /** The model memory-mapped from the APK (stored uncompressed, see app/build.gradle.kts). */
    private fun mapAsset(context: Context, name: String): MappedByteBuffer =
        context.assets.openFd(name).use { fd ->
            fd.createInputStream().channel.use { channel ->
                channel.map(FileChannel.MapMode.READ_ONLY, fd.startOffset, fd.declaredLength)
            }
        }
}
