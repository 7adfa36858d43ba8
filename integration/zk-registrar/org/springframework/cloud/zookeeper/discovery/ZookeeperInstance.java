// The payload Spring Cloud Zookeeper registers with every instance
// (spring-cloud-zookeeper-discovery's
// org.springframework.cloud.zookeeper.discovery.ZookeeperInstance: id, name
// and metadata, instance_status among them), so that Curator writes the
// JSON Spring writes. Spring's own jar comes from Maven only.
package org.springframework.cloud.zookeeper.discovery;

import java.util.HashMap;
import java.util.Map;

public class ZookeeperInstance {
	private String id;
	private String name;
	private Map<String, String> metadata = new HashMap<>();

	public ZookeeperInstance() {
	}

	public ZookeeperInstance(String id, String name, Map<String, String> metadata) {
		this.id = id;
		this.name = name;
		this.metadata = metadata;
	}

	public String getId() { return id; }
	public void setId(String id) { this.id = id; }
	public String getName() { return name; }
	public void setName(String name) { this.name = name; }
	public Map<String, String> getMetadata() { return metadata; }
	public void setMetadata(Map<String, String> metadata) { this.metadata = metadata; }
}
