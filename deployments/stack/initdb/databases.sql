-- compose.yaml: the databases of the Prefect server, the MLflow server and MLflow's user store
CREATE DATABASE prefect;
CREATE DATABASE mlflow;
CREATE DATABASE mlflow_auth;
