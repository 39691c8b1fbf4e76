package dev.cifaredge.classifier

import android.graphics.Bitmap
import android.graphics.ImageDecoder
import android.net.Uri
import android.os.Bundle
import android.view.View
import android.widget.AdapterView
import android.widget.ArrayAdapter
import android.widget.Button
import android.widget.ImageView
import android.widget.Spinner
import android.widget.TextView
import androidx.activity.result.PickVisualMediaRequest
import androidx.activity.result.contract.ActivityResultContracts
import androidx.appcompat.app.AppCompatActivity
import androidx.lifecycle.lifecycleScope
import dev.cifaredge.classifier.contract.ModelContractException
import kotlinx.coroutines.CoroutineScope
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.launch
import kotlinx.coroutines.withContext

/**
 * Pick an image (gallery or camera), classify it with the bundled model.tflite, show the top-5
 * with scores and the inference time.  CPU (1-8 threads), GPU or NPU (the NPU where the device
 * offers one; NNAPI in the deprecated legacyNnapi build) is chosen at run time;
 * any variant `cifar-edge export --format tflite --android app/src/main/assets` writes works.
 */
class MainActivity : AppCompatActivity() {

    // One thread owns the model: loading, classifying and closing never overlap.
    private val modelThread = Dispatchers.Default.limitedParallelism(1)
    private var classifier: Classifier? = null
    private var bitmap: Bitmap? = null
    private lateinit var results: TextView
    private lateinit var timing: TextView
    private lateinit var info: TextView
    private lateinit var accelerator: Spinner
    private lateinit var threads: Spinner

    private val pickImage = registerForActivityResult(ActivityResultContracts.PickVisualMedia()) { uri ->
        uri?.let { load(it) }
    }
    private val takePhoto = registerForActivityResult(ActivityResultContracts.TakePicturePreview()) { photo ->
        photo?.let { show(it) }
    }

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        setContentView(R.layout.activity_main)
        results = findViewById(R.id.results)
        timing = findViewById(R.id.timing)
        info = findViewById(R.id.model_info)
        accelerator = findViewById(R.id.accelerator)
        threads = findViewById(R.id.threads)
        accelerator.adapter = ArrayAdapter(this, android.R.layout.simple_spinner_dropdown_item, Classifier.backends(this))
        threads.adapter = ArrayAdapter(this, android.R.layout.simple_spinner_dropdown_item, listOf(1, 2, 4, 8))
        val reload = object : AdapterView.OnItemSelectedListener {
            override fun onItemSelected(parent: AdapterView<*>?, view: View?, position: Int, id: Long) = openModel()
            override fun onNothingSelected(parent: AdapterView<*>?) = Unit
        }
        accelerator.onItemSelectedListener = reload
        threads.onItemSelectedListener = reload
        findViewById<Button>(R.id.pick).setOnClickListener {
            pickImage.launch(PickVisualMediaRequest(ActivityResultContracts.PickVisualMedia.ImageOnly))
        }
        findViewById<Button>(R.id.camera).setOnClickListener { takePhoto.launch(null) }
    }

    /** (Re)opens the model on the chosen backend and thread count. */
    private fun openModel() {
        val chosen = accelerator.selectedItem as Backend
        val count = threads.selectedItem as Int
        lifecycleScope.launch {
            val opened = withContext(modelThread) {
                classifier?.close()
                classifier = null
                runCatching { Classifier.create(this@MainActivity, chosen, count) }
            }
            opened.onSuccess { (clf, note) ->
                classifier = clf
                val s = clf.spec
                info.text = buildString {
                    append("model.tflite: ${s.inputSize}x${s.inputSize} ${s.inputType} input, ${s.numClasses} classes, ")
                    append("${clf.backend}, ${clf.threads} thread(s)")
                    note?.let { append("\n$it") }
                }
                bitmap?.let { classify(it) }
            }.onFailure { e ->
                info.text = when (e) {
                    is ModelContractException -> e.message
                    is java.io.FileNotFoundException ->
                        "assets/${Classifier.MODEL} or ${Classifier.LABELS} is missing: run " +
                            "`cifar-edge export RUN --format tflite --int8 --android app/src/main/assets` and rebuild"
                    else -> "cannot load the model: ${e.message}"
                }
            }
        }
    }

    private fun load(uri: Uri) {
        lifecycleScope.launch {
            val decoded = withContext(Dispatchers.IO) {
                runCatching {
                    ImageDecoder.decodeBitmap(ImageDecoder.createSource(contentResolver, uri)) { decoder, imageInfo, _ ->
                        decoder.allocator = ImageDecoder.ALLOCATOR_SOFTWARE    // getPixels needs a software bitmap
                        val longest = maxOf(imageInfo.size.width, imageInfo.size.height)
                        if (longest > 2048) decoder.setTargetSampleSize(longest / 1024)   // huge photos: decode smaller
                    }
                }
            }
            decoded.onSuccess { show(it) }.onFailure { results.text = "cannot read that file as an image (${it.message})" }
        }
    }

    private fun show(picture: Bitmap) {
        val software = if (picture.config == Bitmap.Config.HARDWARE) picture.copy(Bitmap.Config.ARGB_8888, false) else picture
        bitmap = software
        findViewById<ImageView>(R.id.image).setImageBitmap(software)
        classify(software)
    }

    private fun classify(picture: Bitmap) {
        lifecycleScope.launch {
            val result = withContext(modelThread) {
                classifier?.let { clf -> runCatching { Pair(clf, clf.classify(picture)) } }
            } ?: return@launch
            result.onSuccess { (clf, r) ->
                results.text = r.top.joinToString("\n") { "%6.2f%%  %s".format(it.score * 100, it.label) }
                timing.text = "inference %.2f ms (with pre/post-processing %.2f ms) on %s, %d thread(s)"
                    .format(r.inferenceMs, r.totalMs, clf.backend, clf.threads)
            }.onFailure { results.text = "classification failed: ${it.message}" }
        }
    }

    override fun onDestroy() {
        val clf = classifier
        classifier = null
        CoroutineScope(modelThread).launch { clf?.close() }   // lifecycleScope is already cancelled here
        super.onDestroy()
    }
}
