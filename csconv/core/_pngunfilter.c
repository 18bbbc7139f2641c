/* PNG scanline unfiltering for csconv's label decoder.
 *
 * Why C: the Paeth and Average filters make each byte depend on the byte just
 * reconstructed to its left, so they cannot be vectorised with numpy. Inflating
 * (zlib-ng) plus this loop decodes a 2048x1024 16-bit instanceIds PNG in a
 * fraction of libpng's time.
 *
 * unfilter(filtered, height, row_bytes, bpp, swap16) -> bytes
 *   filtered: height rows of (1 filter-type byte + row_bytes bytes), as inflated.
 *   swap16:   when true, output 16-bit samples in little-endian order.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static inline unsigned char paeth(int a, int b, int c)
{
    int p = a + b - c;
    int pa = abs(p - a), pb = abs(p - b), pc = abs(p - c);
    if (pa <= pb && pa <= pc)
        return (unsigned char)a;
    return (unsigned char)(pb <= pc ? b : c);
}

static inline uint64_t load8(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

/* Label maps are long runs of one value. Where 8 filtered bytes are zero and the row
   above does not change under them, Sub and Paeth both predict "the pixel to the
   left" (Paeth: |b - c| = 0 picks a), so the row just repeats its last pixel: copy
   those 8 bytes in one go instead of running the predictor byte by byte. */
static inline int repeats_left(const unsigned char *f, const unsigned char *up, Py_ssize_t x, Py_ssize_t bpp)
{
    return load8(f + x) == 0 && (up == NULL || load8(up + x) == load8(up + x - bpp));
}

/* Fill row[x..x+8) with the bpp-byte pixel just before x, repeated. */
static inline void repeat_left8(unsigned char *row, Py_ssize_t x, Py_ssize_t bpp)
{
    if (bpp == 2) {
        uint16_t pixel;
        memcpy(&pixel, row + x - 2, 2);
        uint64_t pattern = (uint64_t)pixel * 0x0001000100010001ULL;
        memcpy(row + x, &pattern, 8);
    } else {
        for (Py_ssize_t i = 0; i < 8; i++) row[x + i] = row[x + i - bpp];
    }
}

static void swap16_row(unsigned char *row, Py_ssize_t row_bytes)
{
    for (Py_ssize_t x = 0; x < row_bytes; x += 2) {
        uint16_t v;
        memcpy(&v, row + x, 2);
        v = (uint16_t)((v >> 8) | (v << 8));
        memcpy(row + x, &v, 2);
    }
}

static PyObject *unfilter(PyObject *self, PyObject *args)
{
    Py_buffer in;
    Py_ssize_t height, row_bytes, bpp;
    int swap16;
    if (!PyArg_ParseTuple(args, "y*nnnp", &in, &height, &row_bytes, &bpp, &swap16))
        return NULL;
    /* The product is checked against overflow before it is formed: a header may claim
       any size, and a wrapped product could match a short buffer. */
    if (height < 0 || row_bytes < 0 || row_bytes == PY_SSIZE_T_MAX || bpp < 1 || bpp > 8 ||
        (height > 0 && row_bytes + 1 > PY_SSIZE_T_MAX / height) ||
        in.len != height * (row_bytes + 1) || (swap16 && row_bytes % 2)) {
        PyBuffer_Release(&in);
        PyErr_SetString(PyExc_ValueError, "inflated image data has the wrong size for its header");
        return NULL;
    }
    PyObject *result = PyBytes_FromStringAndSize(NULL, height * row_bytes);
    unsigned char *zero = calloc((size_t)row_bytes + 1, 1);
    if (result == NULL || zero == NULL) {
        Py_XDECREF(result);
        free(zero);
        PyBuffer_Release(&in);
        return PyErr_NoMemory();
    }
    unsigned char *out = (unsigned char *)PyBytes_AS_STRING(result);
    const unsigned char *src = in.buf;
    const char *error = NULL;

    Py_BEGIN_ALLOW_THREADS
    /* Rows are reconstructed in place in the output, in PNG (big-endian) byte order;
       each row is byte-swapped only after the next row has used it as its "up". */
    const unsigned char *up = zero;
    for (Py_ssize_t y = 0; y < height && error == NULL; y++) {
        unsigned char filter = src[y * (row_bytes + 1)];
        const unsigned char *f = src + y * (row_bytes + 1) + 1;
        unsigned char *row = out + y * row_bytes;
        Py_ssize_t x;
        switch (filter) {
        case 0:
            memcpy(row, f, row_bytes);
            break;
        case 1:
            for (x = 0; x < bpp && x < row_bytes; x++) row[x] = f[x];
            while (x < row_bytes) {
                if (x + 8 <= row_bytes && repeats_left(f, NULL, x, bpp)) {
                    repeat_left8(row, x, bpp);
                    x += 8;
                } else {
                    row[x] = f[x] + row[x - bpp];
                    x++;
                }
            }
            break;
        case 2:
            for (x = 0; x < row_bytes; x++) row[x] = f[x] + up[x];
            break;
        case 3:
            for (x = 0; x < bpp && x < row_bytes; x++) row[x] = f[x] + (up[x] >> 1);
            for (; x < row_bytes; x++) row[x] = f[x] + ((row[x - bpp] + up[x]) >> 1);
            break;
        case 4:
            for (x = 0; x < bpp && x < row_bytes; x++) row[x] = f[x] + up[x];
            while (x < row_bytes) {
                if (x + 8 <= row_bytes && repeats_left(f, up, x, bpp)) {
                    repeat_left8(row, x, bpp);
                    x += 8;
                } else {
                    row[x] = f[x] + paeth(row[x - bpp], up[x], up[x - bpp]);
                    x++;
                }
            }
            break;
        default:
            error = "unknown PNG filter type";
        }
        if (swap16 && y > 0)
            swap16_row(out + (y - 1) * row_bytes, row_bytes);
        up = row;
    }
    if (swap16 && height > 0 && error == NULL)
        swap16_row(out + (height - 1) * row_bytes, row_bytes);
    Py_END_ALLOW_THREADS

    free(zero);
    PyBuffer_Release(&in);
    if (error != NULL) {
        Py_DECREF(result);
        PyErr_SetString(PyExc_ValueError, error);
        return NULL;
    }
    return result;
}

/* lookup16(table, index) -> bytes: table[index[i]] for every uint16 index, as int32.
   numpy's fancy indexing first widens the 2 M uint16 indices of a frame to intp;
   this reads them as they are. The table must hold 65536 entries. */
static PyObject *lookup16(PyObject *self, PyObject *args)
{
    Py_buffer table, index;
    if (!PyArg_ParseTuple(args, "y*y*", &table, &index))
        return NULL;
    if (table.len != 65536 * 4 || index.len % 2) {
        PyBuffer_Release(&table);
        PyBuffer_Release(&index);
        PyErr_SetString(PyExc_ValueError, "lookup16 needs a 65536-entry int32 table and uint16 indices");
        return NULL;
    }
    Py_ssize_t count = index.len / 2;
    PyObject *result = PyBytes_FromStringAndSize(NULL, count * 4);
    if (result != NULL) {
        const int32_t *t = table.buf;
        const uint16_t *i = index.buf;
        int32_t *out = (int32_t *)PyBytes_AS_STRING(result);
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t k = 0; k < count; k++) out[k] = t[i[k]];
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&table);
    PyBuffer_Release(&index);
    return result;
}

static PyMethodDef methods[] = {
    {"unfilter", unfilter, METH_VARARGS, "Undo PNG scanline filters (see the module source)."},
    {"lookup16", lookup16, METH_VARARGS, "int32 table lookup over uint16 indices (see the module source)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_pngunfilter", NULL, -1, methods};

PyMODINIT_FUNC PyInit__pngunfilter(void) { return PyModule_Create(&module); }
