plugins {
    id("com.android.application")
    id("org.jetbrains.kotlin.android")
}

android {
    namespace = "dev.cifaredge.classifier"
    compileSdk = 35

    defaultConfig {
        applicationId = "dev.cifaredge.classifier"
        minSdk = 26
        targetSdk = 35
        versionCode = 1
        versionName = "1.0"
    }

    // compiled (default): LiteRT 2's CompiledModel API on CPU, GPU, and NPU where the device offers one.
    // legacyNnapi (deprecated): LiteRT 1's Interpreter with the NNAPI delegate, which Android 15
    // deprecated and LiteRT 2 dropped; only for devices whose accelerator nothing else reaches.
    flavorDimensions += "runtime"
    productFlavors {
        create("compiled") {
            dimension = "runtime"
            isDefault = true
        }
        create("legacyNnapi") {
            dimension = "runtime"
            applicationIdSuffix = ".nnapi"
            versionNameSuffix = "-nnapi-deprecated"
        }
    }

    buildTypes {
        release {
            isMinifyEnabled = false
        }
    }
    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }
    kotlinOptions {
        jvmTarget = "17"
    }
    // The model must stay uncompressed so LiteRT can memory-map it from the APK.
    androidResources {
        noCompress += "tflite"
    }
}

dependencies {
    // CompiledModel, Environment, TensorBuffer, Accelerator (the GPU accelerator is built in)
    "compiledImplementation"("com.google.ai.edge.litert:litert:2.2.0")
    // Interpreter and org.tensorflow.lite.nnapi.NnApiDelegate
    "legacyNnapiImplementation"("com.google.ai.edge.litert:litert:1.4.0")
    implementation("androidx.core:core-ktx:1.15.0")
    implementation("androidx.appcompat:appcompat:1.7.0")
    implementation("androidx.activity:activity-ktx:1.9.3")
    implementation("com.google.android.material:material:1.12.0")
    implementation("org.jetbrains.kotlinx:kotlinx-coroutines-android:1.9.0")
}
