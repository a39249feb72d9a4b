"""Print the shipped rules' regexes, one per line (input for bench/tools/re2_ceiling.cc)."""
from leakwatch.detect.rules import default_rules_dir, load_rules

if __name__ == "__main__":
    rules, _errors = load_rules(default_rules_dir())
    print("\n".join(r.regex for r in rules if r.enabled))
