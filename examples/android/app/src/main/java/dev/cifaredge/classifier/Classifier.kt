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

/** Top-k and how long the model took, in milliseconds. */
data class Classification(val top: List<Prediction>, val inferenceMs: Double, val totalMs: Double)

/**
 * model.tflite + labels.txt from the app's assets on LiteRT.  Only the Android-specific parts
 * live here (assets, Bitmap); the runtime is the build flavor's `Engine` (CompiledModel, or the
 * deprecated NNAPI Interpreter), and every step that touches the model's input or output is the
 * plain-Kotlin `contract` package, tested on the JVM against cifar-edge.
 */
class Classifier private constructor(
    private val runner: ModelRunner,
    val spec: ModelSpec,
    val labels: List<String>,
    val threads: Int,
) : Closeable {

    val backend: Backend get() = runner.backend

    fun classify(bitmap: Bitmap, k: Int = 5): Classification {
        val start = SystemClock.elapsedRealtimeNanos()
        val crop = centerSquare(bitmap.width, bitmap.height)
        val square = Bitmap.createBitmap(bitmap, crop.x, crop.y, crop.side, crop.side)
        val scaled = Bitmap.createScaledBitmap(square, spec.inputSize, spec.inputSize, true)
        val pixels = IntArray(spec.inputSize * spec.inputSize)
        scaled.getPixels(pixels, 0, spec.inputSize, 0, 0, spec.inputSize, spec.inputSize)
        val input = encodeInput(pixels, spec)
        val t0 = SystemClock.elapsedRealtimeNanos()
        val output = runner.run(input)
        val inferenceMs = (SystemClock.elapsedRealtimeNanos() - t0) / 1e6
        val logits = decodeOutput(output, spec)
        val probabilities = softmax(logits)
        // Rank on the logits (as the contract tests do), show probabilities.
        val top = topK(logits, labels, k).map { it.copy(score = probabilities[it.index]) }
        return Classification(top, inferenceMs, (SystemClock.elapsedRealtimeNanos() - start) / 1e6)
    }

    override fun close() = runner.close()

    companion object {
        const val MODEL = "model.tflite"
        const val LABELS = "labels.txt"

        /** The backends this build offers on this device. */
        fun backends(context: Context): List<Backend> = Engine.offered(context)

        /** Loads the model; a backend the device refuses falls back to CPU, with the reason. */
        fun create(context: Context, backend: Backend, threads: Int): Pair<Classifier, String?> {
            val spec = ModelSpec.read(context.assets.open(MODEL).use { it.readBytes() }, MODEL)
            val labels = parseLabels(context.assets.open(LABELS).bufferedReader().use { it.readText() }, spec.numClasses)
            val (runner, note) = try {
                Engine.open(context, MODEL, spec, backend, threads) to null
            } catch (e: Exception) {
                if (backend == Backend.CPU) throw e
                Engine.open(context, MODEL, spec, Backend.CPU, threads) to "$backend unavailable (${e.message}); running on CPU"
            }
            return Pair(Classifier(runner, spec, labels, threads), note)
        }
    }
}
