# The demo's custom gate. Rego v1, package stella.gates: messages in `deny`
# block the promotion, messages in `warn` are shown.
package stella.gates

deny contains msg if {
	input.security.reachable.critical > 0
	msg := sprintf("%d reachable critical findings", [input.security.reachable.critical])
}

warn contains msg if {
	not input.release.tag
	msg := "release promoted by digest without a tag"
}
