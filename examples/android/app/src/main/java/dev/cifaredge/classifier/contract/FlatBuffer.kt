package dev.cifaredge.classifier.contract

import java.nio.ByteBuffer
import java.nio.ByteOrder

/**
 * The few FlatBuffers reads the model contract needs (tables, vectors, strings, scalars), in
 * plain Kotlin so the contract compiles and is tested without Android or a FlatBuffers jar.
 * Every read is bounds-checked: a truncated or foreign file fails as [ModelContractException].
 */
internal class FlatTable(private val buf: ByteBuffer, private val pos: Int) {

    private fun field(index: Int): Int {
        val vtable = pos - buf.getInt(pos)
        val vtableSize = buf.getShort(vtable).toInt() and 0xFFFF
        val slot = 4 + 2 * index
        if (slot >= vtableSize) return 0
        val offset = buf.getShort(vtable + slot).toInt() and 0xFFFF
        return if (offset == 0) 0 else pos + offset
    }

    private fun indirect(at: Int): Int = at + buf.getInt(at)

    fun has(index: Int): Boolean = field(index) != 0

    fun uint8(index: Int, default: Int = 0): Int = field(index).let { if (it == 0) default else buf.get(it).toInt() and 0xFF }

    fun int8(index: Int, default: Int = 0): Int = field(index).let { if (it == 0) default else buf.get(it).toInt() }

    fun uint32(index: Int, default: Long = 0): Long =
        field(index).let { if (it == 0) default else buf.getInt(it).toLong() and 0xFFFFFFFFL }

    fun uint64(index: Int, default: Long = 0): Long = field(index).let { if (it == 0) default else buf.getLong(it) }

    fun table(index: Int): FlatTable? = field(index).let { if (it == 0) null else FlatTable(buf, indirect(it)) }

    fun string(index: Int): String? = vector(index)?.let { (start, length) ->
        val bytes = ByteArray(length)
        buf.duplicate().order(ByteOrder.LITTLE_ENDIAN).position(start).get(bytes)
        String(bytes, Charsets.UTF_8)
    }

    fun tables(index: Int): List<FlatTable> = vector(index)?.let { (start, length) ->
        List(length) { FlatTable(buf, indirect(start + 4 * it)) }
    } ?: emptyList()

    fun ints(index: Int): IntArray = vector(index)?.let { (start, n) -> IntArray(n) { buf.getInt(start + 4 * it) } } ?: IntArray(0)

    fun longs(index: Int): LongArray = vector(index)?.let { (start, n) -> LongArray(n) { buf.getLong(start + 8 * it) } } ?: LongArray(0)

    fun floats(index: Int): FloatArray = vector(index)?.let { (start, n) -> FloatArray(n) { buf.getFloat(start + 4 * it) } } ?: FloatArray(0)

    /** (start, length) of a vector of bytes; the bytes stay in the file. */
    fun bytes(index: Int): Pair<Int, Int>? = vector(index)

    private fun vector(index: Int): Pair<Int, Int>? {
        val at = field(index)
        if (at == 0) return null
        val start = indirect(at)
        val length = buf.getInt(start)
        if (length < 0 || start + 4 + length.toLong() > buf.limit()) throw IndexOutOfBoundsException("vector past the end")
        return Pair(start + 4, length)
    }

    companion object {
        /** The root table of a FlatBuffer whose 4-byte file identifier must be [identifier]. */
        fun root(buf: ByteBuffer, identifier: String, what: String): FlatTable {
            val b = buf.duplicate().order(ByteOrder.LITTLE_ENDIAN)
            if (b.limit() < 8 || String(ByteArray(4) { b.get(4 + it) }, Charsets.US_ASCII) != identifier) {
                throw ModelContractException("$what has no '$identifier' identifier: it is not what cifar-edge exports")
            }
            return FlatTable(b, b.getInt(0))
        }
    }
}

/** Runs a read of FlatBuffer data, turning out-of-bounds reads of a damaged file into one clear error. */
internal inline fun <T> readingFlatBuffer(what: String, block: () -> T): T = try {
    block()
} catch (e: IndexOutOfBoundsException) {
    throw ModelContractException("$what is truncated or corrupt; copy the file again or re-export it")
} catch (e: IllegalArgumentException) {
    if (e is ModelContractException) throw e
    throw ModelContractException("$what is truncated or corrupt; copy the file again or re-export it")
}
