// JVM tests of the app's model contract (app/src/main/java/.../contract), run against golden
// vectors that cifar-edge's Python side writes from real CIFAR images and real exported
// models (tests/test_android_contract.py compiles this with kotlinc and runs it).
//
//   kotlinc ../app/src/main/java/dev/cifaredge/classifier/contract/*.kt ContractTests.kt \
//       -cp kotlin-test.jar -d contract-tests.jar
//   kotlin -cp contract-tests.jar:kotlin-test.jar ContractTestsKt GOLDEN_DIR
import dev.cifaredge.classifier.contract.ModelContractException
import dev.cifaredge.classifier.contract.ModelSpec
import dev.cifaredge.classifier.contract.Quantization
import dev.cifaredge.classifier.contract.TensorType
import dev.cifaredge.classifier.contract.centerSquare
import dev.cifaredge.classifier.contract.decodeOutput
import dev.cifaredge.classifier.contract.encodeInput
import dev.cifaredge.classifier.contract.parseLabels
import dev.cifaredge.classifier.contract.readOutput
import dev.cifaredge.classifier.contract.topK
import dev.cifaredge.classifier.contract.writeInput
import java.io.File
import java.nio.ByteBuffer
import java.nio.ByteOrder
import kotlin.math.abs
import kotlin.system.exitProcess
import kotlin.test.assertEquals
import kotlin.test.assertFailsWith
import kotlin.test.assertTrue

class Golden(val dir: File) {
    val name: String = dir.name
    val model: ByteArray = File(dir, "model.tflite").readBytes()
    val labels: String = File(dir, "labels.txt").readText()
    private val props: Map<String, String> = File(dir, "spec.txt").readLines().filter { "=" in it }
        .associate { it.substringBefore("=") to it.substringAfter("=") }
    val pixels: ByteArray = File(dir, "pixels.bin").readBytes()
    val input: ByteArray = File(dir, "input.bin").readBytes()
    val output: ByteArray = File(dir, "output.bin").readBytes()
    val scores: FloatArray = File(dir, "scores.bin").readBytes().let { bytes ->
        val b = ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN)
        FloatArray(bytes.size / 4) { b.getFloat() }
    }
    val top5: List<List<Int>> = File(dir, "top5.txt").readLines().filter { it.isNotBlank() }
        .map { line -> line.trim().split(" ").map { it.toInt() } }

    private fun floats(key: String) = props.getValue(key).split(",").map { it.toFloat() }
    private fun quant(prefix: String) = props["${prefix}_scale"]?.let {
        Quantization(it.toFloat(), props.getValue("${prefix}_zero_point").toInt())
    }

    val spec = ModelSpec(
        inputSize = props.getValue("input_size").toInt(),
        inputType = TensorType.valueOf(props.getValue("input_type")),
        inputQuantization = quant("input"),
        mean = floats("mean"), std = floats("std"),
        outputType = TensorType.valueOf(props.getValue("output_type")),
        outputQuantization = quant("output"),
        numClasses = props.getValue("num_classes").toInt(),
    )
    val images: Int get() = top5.size
}

/** RGB bytes of image [i] as the ARGB ints Android's Bitmap.getPixels returns. */
fun argb(g: Golden, i: Int): IntArray {
    val n = g.spec.inputSize * g.spec.inputSize
    return IntArray(n) { p ->
        val o = (i * n + p) * 3
        val r = g.pixels[o].toInt() and 0xFF
        val gr = g.pixels[o + 1].toInt() and 0xFF
        val b = g.pixels[o + 2].toInt() and 0xFF
        (0xFF shl 24) or (r shl 16) or (gr shl 8) or b
    }
}

fun bytesOf(buffer: ByteBuffer): ByteArray {
    val b = buffer.duplicate().order(ByteOrder.LITTLE_ENDIAN)
    b.rewind()
    return ByteArray(b.remaining()).also { b.get(it) }
}

fun specIsReadFromTheModel(g: Golden) {
    assertEquals(g.spec, ModelSpec.read(g.model, "${g.name}/model.tflite"), "spec of ${g.name}")
}

fun inputBytesMatchPython(g: Golden) {
    val spec = ModelSpec.read(g.model)
    assertTrue(ByteOrder.nativeOrder() == ByteOrder.LITTLE_ENDIAN, "golden input bytes are little-endian")
    for (i in 0 until g.images) {
        val ours = bytesOf(encodeInput(argb(g, i), spec))
        val theirs = g.input.copyOfRange(i * spec.inputBytes, (i + 1) * spec.inputBytes)
        val differing = ours.indices.count { ours[it] != theirs[it] }
        assertEquals(0, differing, "${g.name} image $i: $differing of ${ours.size} input bytes differ from Python's")
    }
}

fun outputsDecodeAndRankLikePython(g: Golden) {
    val spec = ModelSpec.read(g.model)
    val labels = parseLabels(g.labels, spec.numClasses)
    for (i in 0 until g.images) {
        val raw = ByteBuffer.wrap(g.output.copyOfRange(i * spec.outputBytes, (i + 1) * spec.outputBytes))
        val scores = decodeOutput(raw, spec)
        for (c in scores.indices) {
            val expected = g.scores[i * spec.numClasses + c]
            assertTrue(abs(scores[c] - expected) <= 1e-5f * maxOf(1f, abs(expected)),
                "${g.name} image $i class $c: score ${scores[c]} vs Python $expected")
        }
        assertEquals(g.top5[i], topK(scores, labels, 5).map { it.index }, "${g.name} image $i top-5")
    }
}

/** What CompiledModel's TensorBuffers are given and read back: the same bytes as Python's, through
 * the one call each type needs (the other one fails the test). */
fun tensorBuffersCarryPythonsBytes(g: Golden) {
    val spec = ModelSpec.read(g.model)
    val float = spec.outputType == TensorType.FLOAT32
    for (i in 0 until g.images) {
        var written: ByteArray? = null
        writeInput(encodeInput(argb(g, i), spec), spec,
            { floats ->
                assertEquals(TensorType.FLOAT32, spec.inputType, "${g.name}: writeFloat on a ${spec.inputType} input")
                written = ByteBuffer.allocate(floats.size * 4).order(ByteOrder.LITTLE_ENDIAN)
                    .also { it.asFloatBuffer().put(floats) }.array()
            },
            { bytes ->
                assertTrue(spec.inputType.isInteger, "${g.name}: writeInt8 on a float32 input")
                written = bytes
            })
        val theirs = g.input.copyOfRange(i * spec.inputBytes, (i + 1) * spec.inputBytes)
        assertTrue(theirs.contentEquals(written), "${g.name} image $i: the tensor buffer's input differs from Python's")
        val raw = g.output.copyOfRange(i * spec.outputBytes, (i + 1) * spec.outputBytes)
        val le = ByteBuffer.wrap(raw).order(ByteOrder.LITTLE_ENDIAN)
        val read = readOutput(spec,
            { assertTrue(float, "${g.name}: readFloat on a ${spec.outputType} output"); FloatArray(spec.numClasses) { le.getFloat(4 * it) } },
            { assertTrue(!float, "${g.name}: readInt8 on a float32 output"); raw })
        val scores = decodeOutput(read, spec)
        for (c in scores.indices) {
            assertEquals(g.scores[i * spec.numClasses + c], scores[c], 1e-5f * maxOf(1f, abs(scores[c])),
                "${g.name} image $i class $c through the tensor buffer")
        }
    }
}

fun cropsMatchPython(root: File) {
    val lines = File(root, "crops.txt").readLines().filter { it.isNotBlank() }
    assertTrue(lines.isNotEmpty(), "crops.txt is empty")
    for (line in lines) {
        val (w, h, x, y, side) = line.trim().split(" ").map { it.toInt() }
        val crop = centerSquare(w, h)
        assertEquals(Triple(x, y, side), Triple(crop.x, crop.y, crop.side), "centre square of ${w}x$h")
    }
}

fun badInputFailsClearly(root: File, g: Golden) {
    val truncated = assertFailsWith<ModelContractException> { ModelSpec.read(g.model.copyOf(g.model.size / 3)) }
    assertTrue("truncated or corrupt" in truncated.message!!, truncated.message)
    val foreign = assertFailsWith<ModelContractException> { ModelSpec.read("GIF89a not a model".toByteArray()) }
    assertTrue("identifier" in foreign.message!!, foreign.message)
    val bare = assertFailsWith<ModelContractException> { ModelSpec.read(File(root, "no_metadata.tflite").readBytes()) }
    assertTrue("no normalization metadata" in bare.message!!, bare.message)
    val spec = ModelSpec.read(g.model)
    val labels = assertFailsWith<ModelContractException> { parseLabels("cat\ndog\n", spec.numClasses) }
    assertTrue("labels.txt has 2 lines" in labels.message!!, labels.message)
    val pixels = assertFailsWith<ModelContractException> { encodeInput(IntArray(7), spec) }
    assertTrue("resize the image" in pixels.message!!, pixels.message)
    val short = assertFailsWith<ModelContractException> { decodeOutput(ByteBuffer.allocate(1), spec) }
    assertTrue("output buffer" in short.message!!, short.message)
    val input = assertFailsWith<ModelContractException> { writeInput(ByteBuffer.allocate(3), spec, {}, {}) }
    assertTrue("input buffer holds 3 bytes" in input.message!!, input.message)
    val other = assertFailsWith<ModelContractException> {
        readOutput(spec, { FloatArray(spec.numClasses + 1) }, { ByteArray(spec.numClasses + 1) })
    }
    assertTrue("holds ${spec.numClasses + 1} values" in other.message!!, other.message)
}

fun main(args: Array<String>) {
    val root = File(args.getOrElse(0) { error("usage: ContractTestsKt GOLDEN_DIR") })
    val goldens = root.listFiles { f -> File(f, "spec.txt").isFile }?.sortedBy { it.name }?.map { Golden(it) }.orEmpty()
    val tests = mutableListOf<Pair<String, () -> Unit>>()
    tests += "crops match Python" to { cropsMatchPython(root) }
    tests += "golden vectors present" to { assertTrue(goldens.isNotEmpty(), "no golden vectors under $root") }
    for (g in goldens) {
        tests += "${g.name}: spec read from the model" to { specIsReadFromTheModel(g) }
        tests += "${g.name}: input bytes (${g.images} images)" to { inputBytesMatchPython(g) }
        tests += "${g.name}: dequantized scores and top-5" to { outputsDecodeAndRankLikePython(g) }
        tests += "${g.name}: CompiledModel tensor buffers" to { tensorBuffersCarryPythonsBytes(g) }
    }
    goldens.firstOrNull()?.let { g -> tests += "bad input fails clearly" to { badInputFailsClearly(root, g) } }
    var failed = 0
    for ((name, test) in tests) {
        try {
            test()
            println("PASS $name")
        } catch (e: Throwable) {
            failed++
            println("FAIL $name: ${e.message}")
        }
    }
    println("${tests.size - failed} passed, $failed failed")
    exitProcess(if (failed == 0) 0 else 1)
}
