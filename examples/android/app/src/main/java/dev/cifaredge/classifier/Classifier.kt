package dev.cifaredge.classifier

import android.content.Context
import android.graphics.Bitmap
import android.os.SystemClock
import dev.cifaredge.classifier.contract.ModelSpec
import dev.cifaredge.classifier.contract.Prediction
import dev.cifaredge.classifier.contract.centerSquare
import dev.cifaredge.classifier.contract.decodeOutput
import dev.cifaredge.classifier.contract.encodeInput
import dev.cifaredge.classifier.contract.parseLabels
import dev.cifaredge.classifier.contract.softmax
import dev.cifaredge.classifier.contract.topK
import java.io.Closeable
import java.nio.ByteBuffer
import java.nio.ByteOrder
import java.nio.MappedByteBuffer
import java.nio.channels.FileChannel
import org.tensorflow.lite.Delegate
import org.tensorflow.lite.Interpreter
import org.tensorflow.lite.gpu.CompatibilityList
import org.tensorflow.lite.gpu.GpuDelegate
import org.tensorflow.lite.nnapi.NnApiDelegate

/** Where the model runs. */
enum class Accelerator { CPU, GPU, NNAPI }

/** Top-k and how long the interpreter took, in milliseconds. */
data class Classification(val top: List<Prediction>, val inferenceMs: Double, val totalMs: Double)

/**
 * model.tflite + labels.txt from the app's assets on LiteRT.  Only the Android-specific parts
 * live here (assets, Bitmap, Interpreter, delegates); every step that touches the model's
 * input or output is the plain-Kotlin `contract` package, tested on the JVM against cifar-edge.
 */
class Classifier private constructor(
    private val interpreter: Interpreter,
    private val delegate: Delegate?,
    val spec: ModelSpec,
    val labels: List<String>,
    val accelerator: Accelerator,
    val threads: Int,
) : Closeable {

    private val output: ByteBuffer = ByteBuffer.allocateDirect(spec.outputBytes).order(ByteOrder.nativeOrder())

    fun classify(bitmap: Bitmap, k: Int = 5): Classification {
        val start = SystemClock.elapsedRealtimeNanos()
        val crop = centerSquare(bitmap.width, bitmap.height)
        val square = Bitmap.createBitmap(bitmap, crop.x, crop.y, crop.side, crop.side)
        val scaled = Bitmap.createScaledBitmap(square, spec.inputSize, spec.inputSize, true)
        val pixels = IntArray(spec.inputSize * spec.inputSize)
        scaled.getPixels(pixels, 0, spec.inputSize, 0, 0, spec.inputSize, spec.inputSize)
        val input = encodeInput(pixels, spec)
        output.rewind()
        val t0 = SystemClock.elapsedRealtimeNanos()
        interpreter.run(input, output)
        val inferenceMs = (SystemClock.elapsedRealtimeNanos() - t0) / 1e6
        val logits = decodeOutput(output, spec)
        val probabilities = softmax(logits)
        // Rank on the logits (as the contract tests do), show probabilities.
        val top = topK(logits, labels, k).map { it.copy(score = probabilities[it.index]) }
        return Classification(top, inferenceMs, (SystemClock.elapsedRealtimeNanos() - start) / 1e6)
    }

    override fun close() {
        interpreter.close()
        (delegate as? Closeable)?.close()
    }

    companion object {
        const val MODEL = "model.tflite"
        const val LABELS = "labels.txt"

        /** Loads the model; GPU or NNAPI falls back to CPU (with the reason) when the device refuses it. */
        fun create(context: Context, accelerator: Accelerator, threads: Int): Pair<Classifier, String?> {
            val model = mapAsset(context, MODEL)
            val bytes = ByteArray(model.capacity()).also { model.duplicate().get(it) }
            val spec = ModelSpec.read(bytes, MODEL)
            val labels = parseLabels(context.assets.open(LABELS).bufferedReader().use { it.readText() }, spec.numClasses)
            var note: String? = null
            var delegate: Delegate? = null
            try {
                delegate = when (accelerator) {
                    Accelerator.CPU -> null
                    Accelerator.GPU -> {
                        val compatibility = CompatibilityList()
                        if (!compatibility.isDelegateSupportedOnThisDevice) error("this device's GPU is not supported by LiteRT")
                        GpuDelegate(compatibility.bestOptionsForThisDevice)
                    }
                    Accelerator.NNAPI -> NnApiDelegate()
                }
                val options = Interpreter.Options().setNumThreads(threads)
                delegate?.let { options.addDelegate(it) }
                return Pair(Classifier(Interpreter(model, options), delegate, spec, labels, accelerator, threads), null)
            } catch (e: Exception) {
                (delegate as? Closeable)?.close()
                if (accelerator == Accelerator.CPU) throw e
                note = "$accelerator unavailable (${e.message}); running on CPU"
            }
            val cpu = Interpreter(model, Interpreter.Options().setNumThreads(threads))
            return Pair(Classifier(cpu, null, spec, labels, Accelerator.CPU, threads), note)
        }

        private fun mapAsset(context: Context, name: String): MappedByteBuffer =
            context.assets.openFd(name).use { fd ->
                fd.createInputStream().channel.use { channel ->
                    channel.map(FileChannel.MapMode.READ_ONLY, fd.startOffset, fd.declaredLength)
                }
            }
    }
}
