"""A stand-in for Colab's `google.colab` package, for the Colab tests.

The notebooks only ask whether it has been imported (`"google.colab" in sys.modules`), as
Colab's kernel does at start; nothing else of it is needed. `google` is a namespace
package (no __init__.py), so `google.protobuf` and friends still import.
"""
