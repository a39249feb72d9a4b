# Declarations of the parts of Google RE2 (Debian libre2-dev 2022-06) that the scanner uses.
# Only `cdef extern` blocks live here; every call is `nogil` because RE2 objects are immutable
# after construction and safe to share between threads.
from libcpp cimport bool
from libcpp.map cimport map
from libcpp.string cimport string
from libcpp.vector cimport vector
from libc.stdint cimport int64_t


cdef extern from "re2/stringpiece.h" namespace "re2" nogil:
    cdef cppclass StringPiece:
        StringPiece()
        StringPiece(const char* data, size_t size)
        const char* data()
        size_t size()


cdef extern from "re2/re2.h" namespace "re2" nogil:
    cdef enum Anchor "re2::RE2::Anchor":
        UNANCHORED "re2::RE2::UNANCHORED"
        ANCHOR_START "re2::RE2::ANCHOR_START"
        ANCHOR_BOTH "re2::RE2::ANCHOR_BOTH"

    cdef enum Encoding "re2::RE2::Options::Encoding":
        EncodingUTF8 "re2::RE2::Options::EncodingUTF8"
        EncodingLatin1 "re2::RE2::Options::EncodingLatin1"

    cdef cppclass RE2Options "re2::RE2::Options":
        RE2Options()
        void set_encoding(Encoding e)
        void set_log_errors(bool b)
        void set_never_nl(bool b)
        void set_max_mem(int64_t m)
        void set_case_sensitive(bool b)
        int64_t max_mem()

    cdef cppclass RE2 "re2::RE2":
        RE2(const StringPiece& pattern, const RE2Options& options)
        bool ok()
        const string& error()
        int ProgramSize()
        int NumberOfCapturingGroups()
        const map[string, int]& NamedCapturingGroups()
        bool Match(const StringPiece& text, size_t startpos, size_t endpos, Anchor re_anchor,
                   StringPiece* submatch, int nsubmatch)


cdef extern from "re2/set.h" namespace "re2" nogil:
    cdef enum ErrorKind "re2::RE2::Set::ErrorKind":
        kNoError "re2::RE2::Set::kNoError"
        kNotCompiled "re2::RE2::Set::kNotCompiled"
        kOutOfMemory "re2::RE2::Set::kOutOfMemory"
        kInconsistent "re2::RE2::Set::kInconsistent"

    cdef cppclass SetErrorInfo "re2::RE2::Set::ErrorInfo":
        ErrorKind kind

    cdef cppclass RE2Set "re2::RE2::Set":
        RE2Set(const RE2Options& options, Anchor anchor)
        int Add(const StringPiece& pattern, string* error)
        bool Compile()
        bool Match(const StringPiece& text, vector[int]* v, SetErrorInfo* error_info)
