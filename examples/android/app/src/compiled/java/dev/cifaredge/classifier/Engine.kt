package dev.cifaredge.classifier

import android.content.Context
import com.google.ai.edge.litert.Accelerator
import com.google.ai.edge.litert.CompiledModel
import com.google.ai.edge.litert.Environment
import dev.cifaredge.classifier.contract.ModelSpec
import dev.cifaredge.classifier.contract.readOutput
import dev.cifaredge.classifier.contract.writeInput
import java.nio.ByteBuffer

/**
 * LiteRT's CompiledModel API (`com.google.ai.edge.litert:litert` 2.x): the model is compiled
 * for one accelerator when it opens, and runs on TensorBuffers the runtime allocates for it.
 */
internal object Engine {

    /** CPU and GPU always (a GPU the runtime refuses falls back to CPU, with the reason); NPU
     *  only where this device's LiteRT environment lists one (a vendor NPU and its dispatch library). */
    fun offered(context: Context): List<Backend> {
        val npu = Environment.create(context).use { Accelerator.NPU in it.getAvailableAccelerators() }
        return listOfNotNull(Backend.CPU, Backend.GPU, Backend.NPU.takeIf { npu })
    }

    /** Compiles assets/[asset] for [backend]; throws when the device cannot (the caller falls back to CPU). */
    fun open(context: Context, asset: String, spec: ModelSpec, backend: Backend, threads: Int): ModelRunner {
        val accelerator = when (backend) {
            Backend.CPU -> Accelerator.CPU
            Backend.GPU -> Accelerator.GPU
            Backend.NPU -> Accelerator.NPU        // LiteRT adds CPU for the ops the NPU cannot run
            else -> throw IllegalArgumentException("$backend is only in the legacyNnapi build")
        }
        val options = CompiledModel.Options(accelerator)
        options.cpuOptions = CompiledModel.CpuOptions(numThreads = threads)
        val env = Environment.create(context)      // caches what an NPU compiles in the app's cache folder
        try {
            return Compiled(CompiledModel.create(context.assets, asset, options, env), env, spec, backend)
        } catch (e: Exception) {
            env.close()
            throw e
        }
    }

    private class Compiled(
        private val model: CompiledModel,
        private val env: Environment,
        private val spec: ModelSpec,
        override val backend: Backend,
    ) : ModelRunner {
        private val inputs = model.createInputBuffers()
        private val outputs = model.createOutputBuffers()

        override fun run(input: ByteBuffer): ByteBuffer {
            writeInput(input, spec, inputs[0]::writeFloat, inputs[0]::writeInt8)
            model.run(inputs, outputs)
            return readOutput(spec, outputs[0]::readFloat, outputs[0]::readInt8)
        }

        override fun close() {
            (inputs + outputs).forEach { it.close() }
            model.close()
            env.close()          // passed in, so not the model's to close
        }
    }
}
