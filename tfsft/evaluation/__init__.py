"""scikit-learn metrics, reports and plots for every task."""
